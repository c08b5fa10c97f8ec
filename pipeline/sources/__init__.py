"""Where images come from, chosen by `data.source`: the MRI archive, class folders, or a TFDS dataset.

Each source yields the same index (one row per file or example found, `pipeline.tables.index`) and a
`SourceInfo`, so that split, preprocess and everything after them stay source-neutral.
"""
