"""Property-based tests: the PNG decoder and the config checks, over inputs nobody would write by hand."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from digitlab.config.checks import validate
from digitlab.data.images import decode_png
from digitlab.errors import ConfigError, DataError

MODES = ["L", "RGB", "RGBA", "LA", "P", "I;16", "1"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    width=st.integers(1, 40),
    height=st.integers(1, 40),
    mode=st.sampled_from(MODES),
    seed=st.integers(0, 2**16),
)
def test_decode_png_accepts_exactly_28x28_in_any_mode(tmp_path, width, height, mode, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width), dtype=np.uint8)
    path = tmp_path / f"{mode.replace(';', '')}_{width}x{height}.png"
    Image.fromarray(pixels).convert(mode).save(path)
    if (width, height) != (28, 28):
        with pytest.raises(DataError, match=rf"is {width}x{height} pixels; MNIST images are 28x28"):
            decode_png(path)
        return
    decoded = decode_png(path)
    assert decoded.shape == (28, 28) and decoded.dtype == np.uint8
    if mode == "L":
        assert np.array_equal(decoded, pixels)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), keep_header=st.booleans())
def test_decode_png_turns_any_garbage_into_a_data_error(tmp_path, data, keep_header):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(buffer, format="PNG")
    blob = buffer.getvalue()[:33] + data if keep_header else data
    path = Path(tmp_path) / "garbage.png"
    path.write_bytes(blob)
    try:
        decode_png(path)
    except DataError as err:
        assert str(path) in str(err)


NUMBERS = st.one_of(
    st.integers(-5, 5), st.floats(-10, 10, allow_nan=False), st.booleans(), st.none(), st.text(max_size=3)
)


@functools.cache
def composed():
    """The default experiment, composed once: each example changes three of its values."""
    from digitlab.api import compose_config

    return compose_config([], output_dir="/tmp/digitlab-properties-unused")


@settings(max_examples=200, deadline=None)
@given(lr=NUMBERS, batch_size=NUMBERS, epochs=NUMBERS)
def test_validate_accepts_exactly_the_allowed_values(lr, batch_size, epochs):
    cfg = composed().copy()
    cfg.optimizer.lr, cfg.data.batch_size, cfg.trainer.max_epochs = lr, batch_size, epochs

    def number(v):
        return isinstance(v, int | float) and not isinstance(v, bool)

    ok = (
        (number(lr) and lr > 0)
        and (isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1)
        and (isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1)
    )
    if ok:
        validate(cfg)
        return
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = str(info.value)
    assert "is invalid: it must be" in message
    assert any(
        message.startswith(key) for key in ("optimizer.lr=", "data.batch_size=", "trainer.max_epochs=")
    )
