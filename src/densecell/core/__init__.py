"""The ground floor, which knows nothing of segmentation: errors, atomic files and locks, progress and Ctrl-C, the
pip extras, the registries and the plugins that fill them, old names that still work, and the tensor and plotting
conventions the layers above share. Nothing here imports from another densecell package."""
