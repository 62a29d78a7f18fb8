"""Reports: runs' results.json against the paper's tables (markdown, plots, a W&B Report), and W&B run files
read back. `python -m vgg_lightning.report PATH...`."""
