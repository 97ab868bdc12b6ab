#define WB_FRAME_OK 0
#define WB_FRAME_UNKNOWN_TYPE 1
#define WB_FRAME_BAD_LENGTH 2

int64_t wb_itch_frame(const uint8_t *buf, int64_t size, const uint8_t *length_by_type, int tolerant,
                      int64_t *offsets, uint8_t *types, int64_t max_messages, int64_t *consumed,
                      int64_t *error_at, int *error_code);
