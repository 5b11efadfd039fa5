"""TensorBoard (bounded to 2.21.x): the file an `EventFileWriter` writes to.

`event_file_name`: a stack's trials write their event files in bulk (`event_files.BufferedEventFile`), each
appending to the file its TensorBoard logger's writer made, header included. tensorboard's `EventFileWriter`
keeps that file's name only in a private attribute (`_file_name`); it has no getter for it.
Upstream: none filed that this project found.
"""

from __future__ import annotations

from typing import Any


def event_file_name(writer: Any) -> str:
    """The path of the event file `writer` (a tensorboard `EventFileWriter`) writes."""
    return writer._file_name
