"""Jobs: plans of many items, run reproducibly and resumably (the dataset and defect commands build here)."""
