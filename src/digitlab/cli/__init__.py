"""The command-line entry points, each thin: parse -> apply the process policy -> build -> run -> report.
`digitlab-train` (train.py), `digitlab-eval` (evaluate.py), `digitlab-predict` (predict.py),
`digitlab-compare` (compare.py), and `python -m digitlab.cli.config_table` (the README's config table)."""
