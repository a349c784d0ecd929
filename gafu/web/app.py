"""The Gradio Blocks page of ``gafu web``: Stylize (live preview), Fast, Compare, Diagnose,
Dataset / defects (a preview of ``gafu dataset`` and ``gafu defects synth``, :mod:`.preview`).

:func:`build_app` only builds the page (nothing runs at import; Gradio is imported there);
:func:`launch` serves it on loopback. API endpoints with stable names for ``gradio_client``:
``stylize``, ``fast``, ``compare``, ``classify``, ``analyze``, ``dataset_preview``,
``defects_preview`` (and ``layers``).
"""


import functools
import inspect
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from ..errors import GafuError
from . import preview as previews
from .jobs import (
    EXAMPLE_PHOTOS,
    EXAMPLE_STYLES,
    DATA_DIR,
    CancelRegistry,
    Limits,
    Workspace,
    analyze_job,
    check_float,
    check_int,
    check_upload,
    classify_job,
    example_paths,
    fast_job,
    field_message,
    layers_job,
    parse_weights,
    release_freed_memory,
    stylize_job,
)

#: Heavy events share one concurrency group: at most ``concurrency`` of them run at once.
JOBS = "gafu-jobs"
BUILTIN_CHOICES = [f"{i}" for i in range(26)]
NO_EXAMPLE = "(none)"
CSS = "footer {display: none !important}"
#: The page's field labels by the argument names their errors carry (GafuError.argument): an error
#: is shown as "<label>: <what is wrong>" (jobs.field_message).
STYLIZE_FIELDS = {"size": "Size (long side, px)", "steps": "Steps", "strength": "Strength", "style scale": "Style scale",
                  "style_weights": "Style weights", "preview every": "Preview every N steps", "styles": "Style images (one or several)"}
FAST_FIELDS = {"strength": "Strength", "built-in style": "Built-in style (overrides the painting)",
               "max size": "Max size when not full resolution (px)"}
COMPARE_FIELDS = {"size": "Size (px)", "steps": "Steps (optimize)", "styles": "Style images"}
PHOTOS_LABEL = f"Images (at most {previews.MAX_IMAGES})"
DATASET_FIELDS = {"photos": PHOTOS_LABEL, "source": "Styles", "styles": "Example paintings",
                  "builtin": "Built-in styles (numbers 0-25 or all)", "method": "Method",
                  "steps": "Steps (optimize)", "variants": "Variants per image", "strength": "Strength (fast)",
                  "max size": "Max size (long side, px)", "seed": "Run seed"}
DEFECTS_FIELDS = {"photos": PHOTOS_LABEL, "category": "Category", "defect_types": "Defect types",
                  "mask": "Mask kind", "fill": "Fill", "blend": "Blend", "n": "Images per defect type",
                  "seed": "Run seed"}
#: Visitor sessions whose Gradio state the server keeps (Gradio's default, 10000, holds ~165 KB
#: each for this page, and a closed page's entry is never dropped). This page keeps no gr.State:
#: an evicted session just gets a fresh one on its next request.
SESSION_CAPACITY = 256


def _gr():
    try:
        import gradio as gr
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("gradio", "gradio_client"):
            raise GafuError("the web page needs Gradio: pip install gafu[web]") from None
        raise
    return gr


def _user_errors(fn, fields: Optional[Dict[str, str]] = None, after: Optional[Callable[[], Any]] = None):
    """Show a GafuError's message on the page (gr.Error) instead of a generic failure, naming the
    page's field when the error names an argument that ``fields`` maps to one (:func:`field_message`).
    ``after`` runs when the handler ends, however it ends (the server's memory release)."""
    gr = _gr()

    def shown(exc: GafuError):
        message, label = field_message(exc, fields or {})
        return gr.Error(message, title=label or "Error", print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except GafuError as exc:
                raise shown(exc) from None
            finally:
                if after is not None:
                    after()
        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GafuError as exc:
            raise shown(exc) from None
        finally:
            if after is not None:
                after()
    return call


def _editor_mask(value: Any):
    """The strokes painted on the mask editor as an 'L' image (255 where painted), or None."""
    from PIL import Image

    if not value or not isinstance(value, dict):
        return None
    layers = [l for l in (value.get("layers") or []) if l is not None]
    if not layers:
        return None
    import numpy as np

    alpha = None
    for layer in layers:
        arr = np.asarray(layer)
        a = arr[..., 3] if arr.ndim == 3 and arr.shape[-1] == 4 else (arr.max(axis=-1) if arr.ndim == 3 else arr)
        alpha = a if alpha is None else np.maximum(alpha, a)
    if alpha is None or not (alpha > 0).any():
        return None
    return Image.fromarray(((alpha > 0) * 255).astype("uint8"), "L")


def build_app(
    *,
    limits: Optional[Limits] = None,
    workdir: Any = None,
    concurrency: int = 1,
    queue_size: int = 8,
    device: str = "cpu",
    weights: Any = None,
    release_memory: bool = False,
):
    """Build the page (a ``gr.Blocks``, queue configured); serve it with :func:`launch`.

    ``workdir``: the only folder the app writes into (default: a new temporary folder); one
    sub-folder per visitor, deleted when the visitor leaves. ``concurrency``: jobs run at once;
    ``queue_size``: jobs that may wait (more are refused with a message). ``release_memory``: after
    each job, give the C heap's free pages back to the kernel (:func:`jobs.release_freed_memory`);
    for a process that is only the server (``gafu web`` sets it), as it acts on the whole process.
    """
    gr = _gr()
    limits = limits or Limits()
    if concurrency < 1 or queue_size < 1:
        raise GafuError("concurrency and queue size must be at least 1")
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="gafu-web-"))
    ws = Workspace(root)
    cancels = CancelRegistry()
    mb = limits.max_file_bytes / 1024**2

    after = release_freed_memory if release_memory else None

    def job(fields: Optional[Dict[str, str]] = None):
        return lambda fn: _user_errors(fn, fields, after)

    def sid(request) -> str:
        return getattr(request, "session_hash", None) or "anonymous"

    # ---- handlers ------------------------------------------------------------------------
    def _styles(uploads, examples):
        files = [check_upload(getattr(f, "name", f), limits, f"style image {i + 1}") for i, f in enumerate(uploads or [])]
        paths = files + example_paths(examples, EXAMPLE_STYLES)
        if len(paths) > limits.max_styles:
            raise GafuError(f"at most {limits.max_styles} style images at once, got {len(paths)}", argument="styles")
        return paths

    @job(STYLIZE_FIELDS)
    def stylize(content, style_files, style_examples, preset, size, steps, strength, style_weights,
                preserve_color, style_scale, mask_drawn, mask_file, preview_every, request: gr.Request):
        content = check_upload(content, limits, "the photo")
        styles = _styles(style_files, style_examples)
        size = check_int("size", size, 64, limits.max_size)
        steps = check_int("steps", steps, 1, limits.max_steps)
        every = check_int("preview every", preview_every, 1, limits.max_steps)
        strength = check_float("strength", strength, 0.0, 1.0)
        scale = check_float("style scale", style_scale, 0.5, 2.0)
        mask = None
        if mask_file:
            mask = check_upload(mask_file, limits, "the mask")
        else:
            mask = _editor_mask(mask_drawn)
        weights_list = parse_weights(style_weights, len(styles))
        session = sid(request)
        out = ws.job_dir(session, "stylize")
        flag = cancels.start(session)
        from ..report import loss_figure

        plot = None
        yield (gr.skip(), gr.skip(), f"preparing {size} px: VGG19 features of the photo and the style"
               f"{'s' if len(styles) > 1 else ''}…", gr.skip(), gr.skip(), gr.skip())
        try:
            for up in stylize_job(content, styles, out, preset=preset, size=size, steps=steps, strength=strength,
                                  style_weights=weights_list, preserve_color=preserve_color, style_scale=scale,
                                  mask=mask, preview_every=every, cancel=flag, device=device, weights=weights):
                if up.history.get("step"):
                    plot = loss_figure(up.history, title="Loss", dpi=60)
                if up.done:
                    yield (up.image, plot, f"**{up.message}**", up.image, str(up.result_path), str(up.report_path))
                elif up.image is not None:
                    status = f"step {up.step}/{up.steps} · loss {up.loss:.4g} · {up.elapsed:.1f} s"
                    yield (up.image, plot, status, gr.skip(), gr.skip(), gr.skip())
        finally:
            cancels.finish(session, flag)

    def cancel(request: gr.Request):
        if cancels.cancel(sid(request)):
            return "cancelling: the image so far becomes the result…"
        return gr.skip()

    @job(FAST_FIELDS)
    def fast(content, style_file, style_example, builtin, strength, preserve_color, full_resolution, max_size,
             request: gr.Request):
        content = check_upload(content, limits, "the photo")
        strength = check_float("strength", strength, 0.0, 1.0)
        style, index = None, None
        if builtin not in (None, "", "none"):
            index = check_int("built-in style", builtin, 0, 25)
        elif style_file:
            style = check_upload(style_file, limits, "the style image")
        elif style_example and style_example != NO_EXAMPLE:
            style = example_paths([style_example], EXAMPLE_STYLES)[0]
        else:
            raise GafuError("choose a painting (upload or example) or a built-in style")
        cap = limits.max_fast_size if full_resolution else check_int("max size", max_size, 16, limits.max_fast_size)
        res = fast_job(content, style, builtin=index, strength=strength, preserve_color=preserve_color,
                       max_size=cap, device=device)
        out = ws.job_dir(sid(request), "fast")
        from ..image import save_image

        path = save_image(res.image, out / "fast.png")
        w, h = res.image.size
        return res.image, str(path), f"{w}x{h} px in {res.seconds:.2f} s ({res.tiles} tile{'s' if res.tiles != 1 else ''})"

    @job(COMPARE_FIELDS)
    def compare(content, style_files, style_examples, method, size, steps, request: gr.Request):
        from ..report import compare_styles

        content = check_upload(content, limits, "the photo")
        styles = _styles(style_files, style_examples)
        size = check_int("size", size, 64, limits.max_size)
        steps = check_int("steps", steps, 1, limits.max_steps)
        cmp = compare_styles(content, styles, method=method, size=size, steps=steps, cell=192, weights=weights,
                             device=device)
        out = ws.job_dir(sid(request), "compare")
        from ..image import save_image

        path = save_image(cmp.sheet, out / "comparison.png")
        secs = ", ".join(f"{s:.1f}" for s in cmp.seconds)
        return cmp.sheet, str(path), f"{len(styles)} styles, seconds each: {secs}"

    @job()
    def classify(image):
        return classify_job(check_upload(image, limits, "the image"), top=5, device=device)

    @job()
    def analyze(content, result, request: gr.Request):
        content = check_upload(content, limits, "the content image")
        result = check_upload(result, limits, "the result image")
        path, numbers = analyze_job(content, result, ws.job_dir(sid(request), "analyze"))
        return str(path), numbers

    @job()
    def layers(image):
        return layers_job(check_upload(image, limits, "the image") if image else None)

    @job(DATASET_FIELDS)
    def dataset_preview(photos, source, examples, style_files, builtin, method, steps, variants, strength,
                        preserve_color, max_size, seed, request: gr.Request):
        res = previews.dataset_preview(
            photos, ws.job_dir(sid(request), "dataset"), limits, source=source, style_examples=examples or (),
            style_files=style_files or (), builtin=builtin, method=method, steps=steps, variants=variants,
            strength=strength, preserve_color=bool(preserve_color), max_size=max_size, seed=seed, device=device,
            weights=weights)
        return res.gallery, res.command, res.summary

    @job(DEFECTS_FIELDS)
    def defects_preview(photos, category, defect_types, mask, fill, fill_file, blend, n, seed, request: gr.Request):
        res = previews.defects_preview(
            photos, ws.job_dir(sid(request), "defects"), limits, category=category, defect_types=defect_types,
            mask=mask, fill=fill, fill_file=fill_file, blend=blend, n=n, seed=seed)
        return res.gallery, res.sheet, res.command, res.summary, res.quality

    def set_mask_background(content):
        return gr.update(value=content) if content else gr.update(value=None)

    def forget(request: gr.Request):
        ws.forget(sid(request))

    # ---- page ----------------------------------------------------------------------------
    photos = [[str(DATA_DIR / f)] for f in EXAMPLE_PHOTOS.values()]
    style_names = list(EXAMPLE_STYLES)
    inp = dict(type="filepath", image_mode=None, sources=["upload", "clipboard"], format="png")
    with gr.Blocks(title="gafu", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown(
            "# gafu — neural style transfer\n"
            f"Uploads up to {mb:g} MB and {limits.max_pixels / 1e6:g} megapixels. Jobs run "
            f"{concurrency} at a time; others wait in the queue (position shown). Your results are "
            "visible to you only and deleted when you close the page."
        )
        with gr.Tab("Stylize", id="stylize"):
            with gr.Row():
                with gr.Column(scale=1):
                    s_content = gr.Image(label="Photo", elem_id="s-content", **inp)
                    gr.Examples(photos, inputs=[s_content], label="Example photos")
                    s_styles = gr.File(label=STYLIZE_FIELDS["styles"], file_count="multiple",
                                       file_types=["image"], type="filepath", elem_id="s-styles")
                    s_examples = gr.CheckboxGroup(style_names, value=[style_names[0]], label="Example paintings",
                                                  elem_id="s-examples")
                    with gr.Row():
                        s_preset = gr.Radio(["fast", "seed"], value="fast", label="Preset",
                                            info="fast: L-BFGS; seed: the TF tutorial's Adam")
                        s_color = gr.Radio(["none", "luminance", "histogram"], value="none",
                                           label="Colour preservation")
                    with gr.Row():
                        s_size = gr.Slider(64, limits.max_size, value=256, step=16, label=STYLIZE_FIELDS["size"],
                                           elem_id="s-size")
                        s_steps = gr.Slider(1, limits.max_steps, value=100, step=1, label=STYLIZE_FIELDS["steps"], elem_id="s-steps")
                    with gr.Row():
                        s_strength = gr.Slider(0, 1, value=0.5, step=0.05, label=STYLIZE_FIELDS["strength"],
                                               info="0.5 = the preset's style weight", elem_id="s-strength")
                        s_scale = gr.Slider(0.5, 2.0, value=1.0, step=0.1, label=STYLIZE_FIELDS["style scale"])
                    with gr.Row():
                        s_weights = gr.Textbox(label=STYLIZE_FIELDS["style_weights"], placeholder="e.g. 0.7, 0.3 (default equal)")
                        s_every = gr.Slider(1, 50, value=5, step=1, label=STYLIZE_FIELDS["preview every"], elem_id="s-every")
                    with gr.Accordion("Mask: stylize only where you paint", open=False):
                        s_mask_draw = gr.ImageEditor(label="Paint on the photo", type="numpy", format="png",
                                                     brush=gr.Brush(colors=["#ff0000"], color_mode="fixed"),
                                                     sources=[], layers=False, elem_id="s-mask")
                        s_mask_file = gr.Image(label="…or upload a mask (white = stylize)", type="filepath",
                                               image_mode=None, format="png", sources=["upload"])
                    with gr.Row():
                        s_go = gr.Button("Stylize", variant="primary", elem_id="s-go")
                        s_cancel = gr.Button("Cancel", variant="stop", elem_id="s-cancel")
                with gr.Column(scale=1):
                    s_status = gr.Markdown("", elem_id="s-status")
                    s_preview = gr.Image(label="Live preview", format="png", interactive=False, elem_id="s-preview")
                    s_plot = gr.Plot(label="Loss", format="png", elem_id="s-plot")
                    s_result = gr.Image(label="Result", format="png", interactive=False, elem_id="s-result")
                    with gr.Row():
                        s_png = gr.File(label="Result PNG", interactive=False, elem_id="s-png")
                        s_report = gr.File(label="Run report (zip)", interactive=False, elem_id="s-report")
            s_content.change(set_mask_background, [s_content], [s_mask_draw], queue=False, api_visibility="private")
            s_go.click(
                stylize,
                [s_content, s_styles, s_examples, s_preset, s_size, s_steps, s_strength, s_weights, s_color,
                 s_scale, s_mask_draw, s_mask_file, s_every],
                [s_preview, s_plot, s_status, s_result, s_png, s_report],
                api_name="stylize", concurrency_limit=concurrency, concurrency_id=JOBS,
            )
            s_cancel.click(cancel, None, [s_status], queue=False, api_name="cancel")

        with gr.Tab("Fast", id="fast"):
            with gr.Row():
                with gr.Column():
                    f_content = gr.Image(label="Photo", elem_id="f-content", **inp)
                    gr.Examples(photos, inputs=[f_content], label="Example photos")
                    f_style = gr.Image(label="Painting (upload)", elem_id="f-style", **inp)
                    f_example = gr.Dropdown([NO_EXAMPLE] + style_names, value=style_names[0], label="…or an example painting")
                    f_builtin = gr.Dropdown(["none"] + BUILTIN_CHOICES, value="none",
                                            label=FAST_FIELDS["built-in style"],
                                            info="…or one of the 26 built-in styles")
                    with gr.Row():
                        f_strength = gr.Slider(0, 1, value=1.0, step=0.05, label=FAST_FIELDS["strength"], elem_id="f-strength")
                        f_color = gr.Checkbox(label="Keep the photo's colours")
                    with gr.Row():
                        f_full = gr.Checkbox(value=True, label="Full resolution")
                        f_max = gr.Slider(64, limits.max_fast_size, value=512, step=16,
                                          label=FAST_FIELDS["max size"], elem_id="f-max")
                    f_go = gr.Button("Stylize fast", variant="primary", elem_id="f-go")
                with gr.Column():
                    f_result = gr.Image(label="Result", format="png", interactive=False, elem_id="f-result")
                    f_info = gr.Markdown(elem_id="f-info")
                    f_png = gr.File(label="Result PNG", interactive=False)
            f_go.click(fast, [f_content, f_style, f_example, f_builtin, f_strength, f_color, f_full, f_max],
                       [f_result, f_png, f_info], api_name="fast", concurrency_limit=concurrency, concurrency_id=JOBS)

        with gr.Tab("Compare", id="compare"):
            with gr.Row():
                with gr.Column():
                    c_content = gr.Image(label="Photo", elem_id="c-content", **inp)
                    gr.Examples(photos, inputs=[c_content], label="Example photos")
                    c_styles = gr.File(label=COMPARE_FIELDS["styles"], file_count="multiple", file_types=["image"],
                                       type="filepath")
                    c_examples = gr.CheckboxGroup(style_names, value=style_names, label="Example paintings")
                    c_method = gr.Radio(["fast", "optimize"], value="fast", label="Method")
                    with gr.Row():
                        c_size = gr.Slider(64, limits.max_size, value=256, step=16, label=COMPARE_FIELDS["size"])
                        c_steps = gr.Slider(1, limits.max_steps, value=50, step=1, label=COMPARE_FIELDS["steps"])
                    c_go = gr.Button("Compare", variant="primary", elem_id="c-go")
                with gr.Column():
                    c_sheet = gr.Image(label="Contact sheet", format="png", interactive=False, elem_id="c-sheet")
                    c_info = gr.Markdown()
                    c_png = gr.File(label="Sheet PNG", interactive=False)
            c_go.click(compare, [c_content, c_styles, c_examples, c_method, c_size, c_steps], [c_sheet, c_png, c_info],
                       api_name="compare", concurrency_limit=concurrency, concurrency_id=JOBS)

        with gr.Tab("Diagnose", id="diagnose"):
            with gr.Row():
                d_content = gr.Image(label="Content (photo)", elem_id="d-content", **inp)
                d_result = gr.Image(label="Result (its stylization)", elem_id="d-result", **inp)
            gr.Examples([[str(DATA_DIR / "chelsea.jpg"), None]], inputs=[d_content, d_result], label="Example")
            with gr.Row():
                d_classify = gr.Button("Classify the content (top 5)", elem_id="d-classify")
                d_classify_r = gr.Button("Classify the result (top 5)")
                d_analyze = gr.Button("Analyze content vs result", variant="primary", elem_id="d-analyze")
                d_layers = gr.Button("VGG19 layers at this size")
            with gr.Row():
                d_label = gr.Label(num_top_classes=5, label="ImageNet classes", elem_id="d-label")
                d_numbers = gr.JSON(label="Total variation, deltas, Sobel, edge preservation")
            d_figure = gr.Image(label="High-pass deltas and Sobel edges", format="png", interactive=False,
                                elem_id="d-figure")
            d_table = gr.Dataframe(headers=["layer", "aliases", "kind", "output shape", "params"], label="VGG19 layers",
                                   interactive=False)
            d_classify.click(classify, [d_content], [d_label], api_name="classify", concurrency_limit=concurrency,
                             concurrency_id=JOBS)
            d_classify_r.click(classify, [d_result], [d_label], api_name="classify_result",
                               concurrency_limit=concurrency, concurrency_id=JOBS)
            d_analyze.click(analyze, [d_content, d_result], [d_figure, d_numbers], api_name="analyze",
                            concurrency_limit=concurrency, concurrency_id=JOBS)
            d_layers.click(layers, [d_content], [d_table], api_name="layers", concurrency_limit=concurrency,
                           concurrency_id=JOBS)
        with gr.Tab("Dataset / defects", id="preview"):
            gr.Markdown(
                "A preview of `gafu dataset stylize` and `gafu defects synth` on a few images, with the "
                "settings as the command that runs the full job (`photos/` stands for your folder of images, "
                "`paintings/` for your uploaded paintings)."
            )
            p_photos = gr.File(label=PHOTOS_LABEL, file_count="multiple", file_types=["image"], type="filepath",
                               elem_id="p-photos")
            gr.Examples([[[str(DATA_DIR / f) for f in EXAMPLE_PHOTOS.values()]]], inputs=[p_photos],
                        label="Example images")
            with gr.Tabs():
                with gr.Tab("Dataset preview", id="dataset"):
                    with gr.Row():
                        with gr.Column():
                            ds_source = gr.Radio(list(previews.STYLE_SOURCES), value="paintings",
                                                 label=DATASET_FIELDS["source"],
                                                 info="paintings: each image gets one of them; built-in: the fast "
                                                 "network's 26; random: sampled style vectors (fitted on the "
                                                 "paintings, or the bundled ones when none)")
                            ds_examples = gr.CheckboxGroup(style_names, value=[style_names[0]],
                                                           label=DATASET_FIELDS["styles"])
                            ds_styles = gr.File(label="…and/or upload paintings", file_count="multiple",
                                                file_types=["image"], type="filepath")
                            ds_builtin = gr.Textbox("all", label=DATASET_FIELDS["builtin"])
                            with gr.Row():
                                ds_method = gr.Radio(["fast", "optimize"], value="fast", label="Method")
                                ds_steps = gr.Slider(1, min(previews.MAX_STEPS, limits.max_steps), value=10, step=1,
                                                     label=DATASET_FIELDS["steps"])
                            with gr.Row():
                                ds_variants = gr.Slider(1, previews.MAX_VARIANTS, value=1, step=1,
                                                        label=DATASET_FIELDS["variants"])
                                ds_strength = gr.Slider(0, 1, value=1.0, step=0.05, label=DATASET_FIELDS["strength"])
                            with gr.Row():
                                ds_color = gr.Checkbox(label="Keep the photos' colours (fast)")
                                ds_size = gr.Slider(64, limits.max_size, value=min(256, limits.max_size), step=16,
                                                    label=DATASET_FIELDS["max size"], elem_id="p-ds-size")
                                ds_seed = gr.Number(0, precision=0, minimum=0, label=DATASET_FIELDS["seed"])
                            ds_go = gr.Button("Preview the dataset", variant="primary", elem_id="p-ds-go")
                        with gr.Column():
                            ds_gallery = gr.Gallery(label="Stylized images", format="png", columns=4, height="auto",
                                                    object_fit="contain", interactive=False, elem_id="p-ds-gallery")
                            ds_info = gr.Markdown(elem_id="p-ds-info")
                            ds_cmd = gr.Textbox(label="The full job (copy and run it)", lines=2, max_lines=6,
                                                interactive=False, buttons=["copy"], elem_id="p-ds-cmd")
                with gr.Tab("Defects preview", id="defects"):
                    with gr.Row():
                        with gr.Column():
                            with gr.Row():
                                df_category = gr.Textbox("sample", label=DEFECTS_FIELDS["category"],
                                                         info="the dataset's category folder, e.g. hazelnut")
                                df_types = gr.Textbox("crack,stain", label=DEFECTS_FIELDS["defect_types"],
                                                      info="crack/scratch: scratches; stain/spot/hole/dent: blobs; "
                                                      "others Perlin; name=kind sets one", elem_id="p-df-types")
                            with gr.Row():
                                df_mask = gr.Dropdown([previews.MASK_BY_TYPE, "perlin", "blob", "scratch"],
                                                      value=previews.MASK_BY_TYPE, label=DEFECTS_FIELDS["mask"])
                                df_blend = gr.Radio(["alpha", "poisson", "mask"], value="alpha",
                                                    label=DEFECTS_FIELDS["blend"])
                            with gr.Row():
                                df_fill = gr.Dropdown([previews.FILL_SELF, "builtin:all", *style_names],
                                                      value=previews.FILL_SELF, allow_custom_value=True,
                                                      label=DEFECTS_FIELDS["fill"],
                                                      info="self: the image's own texture; builtin:K (e.g. "
                                                      "builtin:3,7); a painting", elem_id="p-df-fill")
                                df_fill_file = gr.Image(label="…or upload a painting for the fill", type="filepath",
                                                        image_mode=None, format="png", sources=["upload"])
                            with gr.Row():
                                df_n = gr.Slider(1, previews.MAX_DEFECTS_PER_TYPE, value=2, step=1,
                                                 label=DEFECTS_FIELDS["n"], elem_id="p-df-n")
                                df_seed = gr.Number(0, precision=0, minimum=0, label=DEFECTS_FIELDS["seed"])
                            df_go = gr.Button("Preview the defects", variant="primary", elem_id="p-df-go")
                        with gr.Column():
                            df_gallery = gr.Gallery(label="Defect images and their masks", format="png", columns=4,
                                                    height="auto", object_fit="contain", interactive=False,
                                                    elem_id="p-df-gallery")
                            df_info = gr.Markdown(elem_id="p-df-info")
                            df_cmd = gr.Textbox(label="The full job (copy and run it)", lines=2, max_lines=6,
                                                interactive=False, buttons=["copy"], elem_id="p-df-cmd")
                            df_sheets = gr.Image(label="Contact sheets (image | mask overlaid)", format="png",
                                                 interactive=False, elem_id="p-df-sheets")
                            with gr.Accordion("Quality summary (quality.json)", open=False):
                                df_quality = gr.JSON(show_label=False)
            ds_go.click(dataset_preview,
                        [p_photos, ds_source, ds_examples, ds_styles, ds_builtin, ds_method, ds_steps, ds_variants,
                         ds_strength, ds_color, ds_size, ds_seed],
                        [ds_gallery, ds_cmd, ds_info], api_name="dataset_preview", concurrency_limit=concurrency,
                        concurrency_id=JOBS)
            df_go.click(defects_preview,
                        [p_photos, df_category, df_types, df_mask, df_fill, df_fill_file, df_blend, df_n, df_seed],
                        [df_gallery, df_sheets, df_cmd, df_info, df_quality], api_name="defects_preview",
                        concurrency_limit=concurrency, concurrency_id=JOBS)
        demo.unload(forget)
    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    demo.gafu_workspace = ws  # for tests and the launcher
    demo.gafu_limits = limits
    return demo


def launch(demo, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True, quiet: bool = False):
    """Serve the page on ``host:port`` (no share link, no monitoring, uploads capped by the
    app's limits). With ``block=False`` returns at once (the server runs in a thread)."""
    limits = getattr(demo, "gafu_limits", Limits())
    ws = getattr(demo, "gafu_workspace", None)
    return demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        max_file_size=limits.max_file_bytes,
        enable_monitoring=False,
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        prevent_thread_lock=not block,
        quiet=quiet,
        show_error=True,
        state_session_capacity=SESSION_CAPACITY,
        inbrowser=False,
        allowed_paths=[str(ws.root)] if ws is not None else None,
        css=CSS,
    )
