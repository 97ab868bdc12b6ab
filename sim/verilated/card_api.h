/* The simulated card's C API: the FeedHandler core (hdl/feed_handler.py) compiled by Verilator (behind a
 * register on every input, for speed: see card_api.cpp), its two feed inputs, its record output and its
 * AXI4-Lite CSR port driven from C.
 *
 * A wb_card is one Verilated model in its own VerilatedContext: several cards in one process are
 * independent. Frames are queued per line and driven beat by beat, one beat per cycle at most, by
 * wb_card_run (and by the CSR accesses, which clock the whole model too); records are copied into a ring
 * as the core emits them and popped by the host. A full ring holds m_axis_bbo_tready low: the core is
 * back-pressured, no record is ever lost. Everything per cycle happens here; the host never drives a
 * single cycle.
 *
 * sim/verilated_card.py (cffi, ABI mode) reads the declarations between the cdef markers below: keep
 * them plain C, with no preprocessor line between the markers.
 */
#ifndef WIREBOOK_CARD_API_H
#define WIREBOOK_CARD_API_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cdef: begin */
typedef struct wb_card wb_card;

enum {
    WB_CARD_LINES = 2,                /* line 0 is feed line A (s_axis_a), line 1 is B (s_axis_b) */
    WB_CARD_RECORD_BYTES = 64,        /* one BBO record (proto/bbo.py), byte k at tdata bits 8k..8k+7 */
    WB_CARD_BAD_ARGUMENT = -1,        /* a line not 0/1, an empty frame, an unaligned or out-of-window address */
    WB_CARD_AXIL_TIMEOUT = -2,        /* the core did not answer a CSR access within WB_CARD_AXIL_TIMEOUT_CYCLES */
    WB_CARD_AXIL_TIMEOUT_CYCLES = 1000
};

/* The built core's parameters: data_width (8, 32 or 64 bits a beat) and its CSR window's address bits. */
int wb_card_data_width(void);
int wb_card_axil_address_bits(void);

/* A new card with a ring of ring_records records, reset (wb_card_reset(card, 4)); NULL when ring_records
 * is below 1 or memory runs out. */
wb_card *wb_card_open(int64_t ring_records);
void wb_card_close(wb_card *card);

/* Hold rst high for `cycles` cycles (at least 1) then low for 2, inputs idle. Queued frames (the one in
 * flight too), records not yet popped and an unfinished CSR access are dropped; the cycle count, the
 * random generators and the ring's capacity are kept. */
void wb_card_reset(wb_card *card, int cycles);

/* Queue one Ethernet frame (no FCS) of `length` bytes on `line`; 0, or WB_CARD_BAD_ARGUMENT. */
int wb_card_push_frame(wb_card *card, int line, const uint8_t *data, int64_t length);

/* Bytes queued on `line` that the core has not taken yet (the rest of the frame in flight included);
 * WB_CARD_BAD_ARGUMENT for a bad line. */
int64_t wb_card_queued_bytes(const wb_card *card, int line);

/* Run up to max_cycles cycles; the number run. With quiet_cycles > 0, return early after quiet_cycles
 * quiet cycles in a row: both queues empty and no record transferred or offered into a ring with room
 * (a record held only by a full ring counts as quiet: popping is the host's move). */
int64_t wb_card_run(wb_card *card, int64_t max_cycles, int64_t quiet_cycles);

/* Records waiting in the ring, and the ring's capacity. */
int64_t wb_card_records_waiting(const wb_card *card);
int64_t wb_card_ring_capacity(const wb_card *card);

/* Copy up to max_records records (64 bytes each) to `out` in emission order and take them from the ring;
 * the number copied. */
int64_t wb_card_pop_records(wb_card *card, uint8_t *out, int64_t max_records);

/* One AXI4-Lite transaction (32-bit data, byte address aligned to 4); the model is clocked throughout,
 * so the streams keep flowing. Returns the 2-bit response (0 OKAY, 2 SLVERR), WB_CARD_BAD_ARGUMENT, or
 * WB_CARD_AXIL_TIMEOUT (then reset the card: the transaction may still be open on the bus). */
int wb_card_axil_read(wb_card *card, uint32_t address, uint32_t *data);
int wb_card_axil_write(wb_card *card, uint32_t address, uint32_t data, uint32_t strb);

/* Cycles run since wb_card_open (reset cycles and CSR accesses included). */
uint64_t wb_card_cycles(const wb_card *card);

/* Cycles in which an input offered a beat and was refused while the record output was ready: 0 at line
 * rate (the core's promise with tready high). */
uint64_t wb_card_stalled_cycles(const wb_card *card);

/* Random flow control, reproducible by seed: each cycle an input with a frame queued and no beat pending
 * stays idle with `probability`; m_axis_bbo_tready is low with `probability`. 0 turns it off; a value
 * outside [0, 1) is refused with WB_CARD_BAD_ARGUMENT (1 would never move). */
int wb_card_set_idle(wb_card *card, double probability, uint64_t seed);
int wb_card_set_backpressure(wb_card *card, double probability, uint64_t seed);
/* cdef: end */

#ifdef __cplusplus
}
#endif

#endif
