/* The C side of wirebook.driver.dpdk: DPDK's static-inline calls and the per-packet loops, behind plain
 * functions that cffi can call (driver/dpdk/build.py hands cffi this header's declarations).
 *
 * Frame batches cross to Python in one layout, the same both ways: `slots` is a C-contiguous uint8 array of
 * `count` slots of `slot_size` bytes (frame i starts at slots + i * slot_size), `lengths` a uint32 array of
 * `count` frame lengths. No function here allocates per packet outside DPDK's mempool, and none blocks.
 *
 * Errors: functions returning int return 0 (or a count) on success and a negative errno on failure, with a
 * sentence naming the failed step in the caller's `err` buffer where one is taken.
 */
#ifndef WIREBOOK_DPDK_SHIM_H
#define WIREBOOK_DPDK_SHIM_H

#include <stddef.h>
#include <stdint.h>

/* cdef: begin (driver/dpdk/build.py gives cffi what lies between these markers, so it declares exactly this) */
#define WB_BURST 64 /* frames asked of the PMD per rx/tx burst */

struct wb_stats {
    uint64_t ipackets;  /* frames the port received (the PMD's count, includes frames not yet read) */
    uint64_t ibytes;
    uint64_t imissed;   /* dropped by the hardware / kernel ring because the rx queue was full */
    uint64_t ierrors;   /* erroneous frames received */
    uint64_t rx_nombuf; /* frames dropped because the mempool had no free mbuf */
    uint64_t opackets;
    uint64_t obytes;
    uint64_t oerrors;
    uint64_t truncated; /* frames longer than the caller's slot: only the first slot_size bytes kept */
};

/* --- EAL ---------------------------------------------------------------------------------------------- */

/* Send DPDK's log to a ring of the last `WB_LOG_KEEP` bytes (read by wb_log_tail), echoing to stderr the
 * messages at `echo_level` or more severe (RTE_LOG_ERR = 4 ... RTE_LOG_DEBUG = 8; 0 echoes nothing).
 * Call before wb_eal_init to capture the EAL's own messages. */
#define WB_LOG_KEEP 16384
int wb_log_capture(int echo_level);
size_t wb_log_end(void); /* bytes logged so far: a mark to pass to wb_log_tail */
/* The kept log written since mark `since` (0: all of it), oldest first, NUL-terminated; returns its length. */
size_t wb_log_tail(char *out, size_t capacity, size_t since);

int wb_eal_init(int argc, char **argv); /* rte_eal_init: parsed argument count, or -rte_errno */
int wb_eal_cleanup(void);
const char *wb_strerror(int errnum); /* rte_strerror: DPDK's own codes as well as errno values */
const char *wb_eal_library(void);    /* the path of the loaded librte_eal (its PMD folder is next to it) */

/* --- ports -------------------------------------------------------------------------------------------- */

int wb_dev_probe(const char *devargs);             /* hotplug a device ("net_ring0", "net_pcap0,rx_pcap=..") */
int wb_vdev_remove(const char *name);              /* detach a hotplugged vdev by name */
int wb_port_by_name(const char *name, uint16_t *port_id);
int wb_port_name(uint16_t port_id, char *name, size_t capacity);
int wb_port_valid(uint16_t port_id);
uint16_t wb_port_count(void);

/* Configure one rx and one tx queue on `port_id` with a new mempool of `n_mbufs` mbufs of `data_room`
 * bytes (headroom included), enable promiscuous mode where the PMD offers it, enable the rx timestamp
 * offload where offered, and start the port. Descriptor counts are adjusted to what the PMD accepts. */
int wb_port_start(uint16_t port_id, uint32_t n_mbufs, uint16_t data_room, uint16_t rx_desc, uint16_t tx_desc,
                  char *err, size_t err_capacity);
/* Stop and close the port (a hotplugged vdev is then removed by wb_vdev_remove), free its mempool. */
int wb_port_close(uint16_t port_id);
/* Bytes of frame an mbuf of this port's mempool holds (its data room minus the headroom): what wb_tx can
 * send in one frame. 0 if the port is not started. */
uint32_t wb_port_max_tx_frame(uint16_t port_id);
/* Does this port's PMD put an rx timestamp in the mbufs (dynamic field registered)? */
int wb_port_has_rx_timestamp(uint16_t port_id);

/* Receive what is waiting on rx queue 0, up to `max_frames`, without waiting: bursts until one comes back
 * short or `max_frames` are in. Frame i goes to slot i, its full length to lengths[i] (a frame longer than
 * `slot_size` keeps its first `slot_size` bytes, and counts in wb_stats.truncated), its PMD rx timestamp to
 * timestamps[i] if `timestamps` is not NULL (0 when the PMD gave none). The mbufs are freed here.
 * Returns the number of frames received. */
uint32_t wb_rx(uint16_t port_id, uint8_t *slots, uint32_t slot_size, uint32_t max_frames, uint32_t *lengths,
               uint64_t *timestamps);

/* Send `count` frames (slot i, lengths[i] bytes) on tx queue 0, in order. Stops at the first frame the tx
 * queue or the mempool cannot take, or whose length is not 1..min(slot_size, wb_port_max_tx_frame);
 * returns the number sent (frames [0, n) are on their way, [n, count) were not sent). */
uint32_t wb_tx(uint16_t port_id, const uint8_t *slots, uint32_t slot_size, const uint32_t *lengths,
               uint32_t count);

int wb_port_stats(uint16_t port_id, struct wb_stats *out);
int wb_port_stats_reset(uint16_t port_id);
/* cdef: end */

#endif
