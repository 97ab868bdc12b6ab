/* ITCH 5.0 binary file framing: each message behind a 2-byte big-endian length.
 *
 * wb_itch_frame walks `buf` from its start and records the offset (of the type byte) and the type of each
 * complete message, stopping at the first message that does not fit (a chunk boundary: the caller carries
 * the rest into the next chunk), at `max_messages`, or at the first framing error.
 *
 * A message is well framed when its type byte is an ITCH 5.0 type (length_by_type[type] != 0) and its
 * length field equals that type's fixed length; in tolerant mode a length field of zero is also accepted
 * (files written with empty length fields) and the type's length is used.
 *
 * Returns the number of messages framed. *consumed is the number of bytes they span. On error *error_code
 * is set (WB_FRAME_OK when none) and *error_at is the offset of the bad length field within `buf`.
 * This is the only sequential step of bulk decoding; everything after it is vectorised in numpy.
 */
#include <stdint.h>
#include "itch_framer.h"

int64_t wb_itch_frame(const uint8_t *buf, int64_t size, const uint8_t *length_by_type, int tolerant,
                      int64_t *offsets, uint8_t *types, int64_t max_messages, int64_t *consumed,
                      int64_t *error_at, int *error_code)
{
    int64_t at = 0, n = 0;
    *error_code = WB_FRAME_OK;
    *error_at = -1;
    while (n < max_messages && at + 3 <= size) {
        unsigned declared = ((unsigned)buf[at] << 8) | buf[at + 1];
        uint8_t type = buf[at + 2];
        unsigned expected = length_by_type[type];
        if (expected == 0) {
            *error_code = WB_FRAME_UNKNOWN_TYPE;
            *error_at = at;
            break;
        }
        if (declared != expected && !(tolerant && declared == 0)) {
            *error_code = WB_FRAME_BAD_LENGTH;
            *error_at = at;
            break;
        }
        if (at + 2 + (int64_t)expected > size)
            break; /* incomplete message: ends in the next chunk */
        offsets[n] = at + 2;
        types[n] = type;
        n++;
        at += 2 + expected;
    }
    *consumed = at;
    return n;
}
