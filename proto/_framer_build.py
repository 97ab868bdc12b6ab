"""cffi API-mode build of the ITCH file framer (wirebook.proto._itch_framer); run by setup.py."""

from pathlib import Path

from cffi import FFI

# setup.py runs from the project root and wants paths relative to it.
HERE = Path("proto")

ffibuilder = FFI()
ffibuilder.cdef(
    """
    #define WB_FRAME_OK ...
    #define WB_FRAME_UNKNOWN_TYPE ...
    #define WB_FRAME_BAD_LENGTH ...
    int64_t wb_itch_frame(const uint8_t *buf, int64_t size, const uint8_t *length_by_type, int tolerant,
                          int64_t *offsets, uint8_t *types, int64_t max_messages, int64_t *consumed,
                          int64_t *error_at, int *error_code);
    """
)
ffibuilder.set_source(
    "wirebook.proto._itch_framer",
    '#include "itch_framer.h"',
    sources=[str(HERE / "itch_framer.c")],
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
