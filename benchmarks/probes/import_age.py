"""`python import_age.py MODULE`: seconds from process start until `import MODULE` has returned (the import
floor figure); measured inside the process, so the interpreter's exit is not counted."""

import importlib
import sys

importlib.import_module(sys.argv[1])

from process_age import process_age_s  # noqa: E402 (imported after the module being timed)

print(process_age_s())
