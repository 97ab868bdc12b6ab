/* See shim.h for the contracts. */
#define _GNU_SOURCE
#include "shim.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_memcpy.h>
#include <rte_mempool.h>
#include <rte_prefetch.h>

/* What wirebook keeps per started port. rx/tx run on one thread per port (DPDK's queue rule), so the
 * counters here need no atomics. */
struct wb_port {
    struct rte_mempool *pool; /* NULL: not started by wirebook */
    uint32_t max_tx_frame;
    int ts_offset;            /* rx timestamp dynamic field, -1 if absent */
    uint64_t ts_flag;         /* its ol_flags bit, 0 if absent */
    uint64_t truncated;
};

static struct wb_port ports[RTE_MAX_ETHPORTS];
static unsigned pool_serial; /* mempool names must be unique for the life of the process */

static void fail(char *err, size_t capacity, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || capacity == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, capacity, fmt, ap);
    va_end(ap);
}

/* --- the log ring --------------------------------------------------------------------------------------- */

static char log_ring[WB_LOG_KEEP];
static size_t log_end;  /* total bytes ever written; the ring holds the last min(log_end, WB_LOG_KEEP) */
static int log_echo_level;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static ssize_t log_write(void *cookie, const char *buf, size_t size)
{
    (void)cookie;
    pthread_mutex_lock(&log_lock);
    for (size_t i = 0; i < size; i++)
        log_ring[(log_end + i) % WB_LOG_KEEP] = buf[i];
    log_end += size;
    pthread_mutex_unlock(&log_lock);
    /* rte_vlog flushes once per message, so the level asked here is this message's */
    if (log_echo_level > 0 && rte_log_cur_msg_loglevel() <= log_echo_level)
        fwrite(buf, 1, size, stderr);
    return (ssize_t)size;
}

int wb_log_capture(int echo_level)
{
    static FILE *stream;
    log_echo_level = echo_level;
    if (stream == NULL) {
        cookie_io_functions_t io = {.write = log_write};
        stream = fopencookie(NULL, "w", io);
        if (stream == NULL)
            return -errno;
    }
    return rte_openlog_stream(stream);
}

size_t wb_log_end(void)
{
    size_t end;
    pthread_mutex_lock(&log_lock);
    end = log_end;
    pthread_mutex_unlock(&log_lock);
    return end;
}

size_t wb_log_tail(char *out, size_t capacity, size_t since)
{
    size_t kept, start, n;
    if (capacity == 0)
        return 0;
    pthread_mutex_lock(&log_lock);
    kept = log_end < WB_LOG_KEEP ? log_end : WB_LOG_KEEP;
    if (since <= log_end && log_end - since < kept)
        kept = log_end - since;
    n = kept < capacity - 1 ? kept : capacity - 1;
    start = log_end - n;
    for (size_t i = 0; i < n; i++)
        out[i] = log_ring[(start + i) % WB_LOG_KEEP];
    out[n] = '\0';
    pthread_mutex_unlock(&log_lock);
    return n;
}

/* --- EAL ------------------------------------------------------------------------------------------------ */

int wb_eal_init(int argc, char **argv)
{
    int ret = rte_eal_init(argc, argv);
    return ret < 0 ? -rte_errno : ret;
}

int wb_eal_cleanup(void) { return rte_eal_cleanup(); }

const char *wb_strerror(int errnum) { return rte_strerror(errnum < 0 ? -errnum : errnum); }

const char *wb_eal_library(void)
{
    Dl_info info;
    if (dladdr((void *)rte_eal_init, &info) == 0 || info.dli_fname == NULL)
        return "";
    return info.dli_fname;
}

/* --- ports ---------------------------------------------------------------------------------------------- */

int wb_dev_probe(const char *devargs)
{
    int ret = rte_dev_probe(devargs);
    return ret < 0 ? ret : 0;
}

int wb_vdev_remove(const char *name) { return rte_eal_hotplug_remove("vdev", name); }

int wb_port_by_name(const char *name, uint16_t *port_id) { return rte_eth_dev_get_port_by_name(name, port_id); }

int wb_port_name(uint16_t port_id, char *name, size_t capacity)
{
    char buf[RTE_ETH_NAME_MAX_LEN];
    int ret = rte_eth_dev_get_name_by_port(port_id, buf);
    if (ret == 0)
        snprintf(name, capacity, "%s", buf);
    return ret;
}

int wb_port_valid(uint16_t port_id) { return rte_eth_dev_is_valid_port(port_id); }

uint16_t wb_port_count(void) { return rte_eth_dev_count_avail(); }

int wb_port_start(uint16_t port_id, uint32_t n_mbufs, uint16_t data_room, uint16_t rx_desc, uint16_t tx_desc,
                  char *err, size_t err_capacity)
{
    struct rte_eth_dev_info info;
    struct rte_eth_conf conf;
    struct wb_port *p;
    char pool_name[RTE_MEMPOOL_NAMESIZE];
    int socket, ret, ts_bit;
    unsigned cache;

    if (port_id >= RTE_MAX_ETHPORTS || !rte_eth_dev_is_valid_port(port_id)) {
        fail(err, err_capacity, "there is no DPDK port %u", port_id);
        return -ENODEV;
    }
    p = &ports[port_id];
    if (p->pool != NULL) {
        fail(err, err_capacity, "port %u is already started", port_id);
        return -EBUSY;
    }
    ret = rte_eth_dev_info_get(port_id, &info);
    if (ret != 0) {
        fail(err, err_capacity, "rte_eth_dev_info_get: %s", rte_strerror(-ret));
        return ret;
    }
    socket = rte_eth_dev_socket_id(port_id);
    if (socket < 0)
        socket = SOCKET_ID_ANY;

    /* a per-lcore cache must stay well below the pool size (rte_mempool_create refuses otherwise) */
    cache = n_mbufs / 4 < RTE_MEMPOOL_CACHE_MAX_SIZE ? n_mbufs / 4 : RTE_MEMPOOL_CACHE_MAX_SIZE;
    snprintf(pool_name, sizeof(pool_name), "wb_mbuf_%u_%u", port_id, pool_serial++);
    p->pool = rte_pktmbuf_pool_create(pool_name, n_mbufs, cache, 0, data_room, socket);
    if (p->pool == NULL) {
        ret = -rte_errno;
        fail(err, err_capacity,
             "rte_pktmbuf_pool_create of %u mbufs of %u bytes: %s (with --no-huge the EAL has -m megabytes of "
             "memory, 64 by default)",
             n_mbufs, data_room, rte_strerror(rte_errno));
        return ret;
    }

    memset(&conf, 0, sizeof(conf));
    if (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_TIMESTAMP)
        conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_TIMESTAMP;
    ret = rte_eth_dev_configure(port_id, 1, 1, &conf);
    if (ret != 0) {
        fail(err, err_capacity, "rte_eth_dev_configure (1 rx, 1 tx queue): %s", rte_strerror(-ret));
        goto free_pool;
    }
    ret = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &rx_desc, &tx_desc);
    if (ret != 0) {
        fail(err, err_capacity, "rte_eth_dev_adjust_nb_rx_tx_desc: %s", rte_strerror(-ret));
        goto close;
    }
    ret = rte_eth_rx_queue_setup(port_id, 0, rx_desc, socket, NULL, p->pool);
    if (ret != 0) {
        fail(err, err_capacity, "rte_eth_rx_queue_setup (%u descriptors): %s", rx_desc, rte_strerror(-ret));
        goto close;
    }
    ret = rte_eth_tx_queue_setup(port_id, 0, tx_desc, socket, NULL);
    if (ret != 0) {
        fail(err, err_capacity, "rte_eth_tx_queue_setup (%u descriptors): %s", tx_desc, rte_strerror(-ret));
        goto close;
    }
    ret = rte_eth_dev_start(port_id);
    if (ret != 0) {
        fail(err, err_capacity, "rte_eth_dev_start: %s", rte_strerror(-ret));
        goto close;
    }
    /* Feeds arrive on multicast groups: take every frame and let the caller filter. Not every PMD can
     * (net_ring has no MAC filter at all), so its refusal is not an error. */
    rte_eth_promiscuous_enable(port_id);

    /* PMDs register the rx timestamp field at probe or start; it is process-wide, the per-mbuf flag says
     * whether this frame carries one. */
    p->ts_offset = rte_mbuf_dynfield_lookup(RTE_MBUF_DYNFIELD_TIMESTAMP_NAME, NULL);
    ts_bit = rte_mbuf_dynflag_lookup(RTE_MBUF_DYNFLAG_RX_TIMESTAMP_NAME, NULL);
    p->ts_flag = (p->ts_offset >= 0 && ts_bit >= 0) ? (UINT64_C(1) << ts_bit) : 0;
    p->max_tx_frame = data_room > RTE_PKTMBUF_HEADROOM ? data_room - RTE_PKTMBUF_HEADROOM : 0;
    p->truncated = 0;
    return 0;

close:
    rte_eth_dev_close(port_id);
free_pool:
    rte_mempool_free(p->pool);
    p->pool = NULL;
    return ret;
}

int wb_port_close(uint16_t port_id)
{
    struct wb_port *p;
    int ret;
    if (port_id >= RTE_MAX_ETHPORTS)
        return -ENODEV;
    p = &ports[port_id];
    if (p->pool == NULL)
        return -ENODEV;
    /* stop before close: the pcap PMD writes out its tx file on stop */
    rte_eth_dev_stop(port_id);
    ret = rte_eth_dev_close(port_id);
    rte_mempool_free(p->pool);
    memset(p, 0, sizeof(*p));
    return ret;
}

uint32_t wb_port_max_tx_frame(uint16_t port_id)
{
    return port_id < RTE_MAX_ETHPORTS && ports[port_id].pool ? ports[port_id].max_tx_frame : 0;
}

int wb_port_has_rx_timestamp(uint16_t port_id)
{
    return port_id < RTE_MAX_ETHPORTS && ports[port_id].ts_flag != 0;
}

/* Copy the first `keep` bytes of a (possibly chained) mbuf. */
static inline void copy_out(uint8_t *dst, const struct rte_mbuf *m, uint32_t keep)
{
    if (likely(m->nb_segs == 1)) {
        rte_memcpy(dst, rte_pktmbuf_mtod(m, const void *), keep);
        return;
    }
    for (; m != NULL && keep > 0; m = m->next) {
        uint32_t n = m->data_len < keep ? m->data_len : keep;
        rte_memcpy(dst, rte_pktmbuf_mtod(m, const void *), n);
        dst += n;
        keep -= n;
    }
}

uint32_t wb_rx(uint16_t port_id, uint8_t *slots, uint32_t slot_size, uint32_t max_frames, uint32_t *lengths,
               uint64_t *timestamps)
{
    struct rte_mbuf *burst[WB_BURST];
    struct wb_port *p;
    uint32_t n = 0;

    if (port_id >= RTE_MAX_ETHPORTS || ports[port_id].pool == NULL)
        return 0;
    p = &ports[port_id];
    while (n < max_frames) {
        uint16_t want = max_frames - n < WB_BURST ? (uint16_t)(max_frames - n) : WB_BURST;
        uint16_t got = rte_eth_rx_burst(port_id, 0, burst, want);
        for (uint16_t i = 0; i < got; i++) {
            const struct rte_mbuf *m = burst[i];
            uint32_t len = m->pkt_len, keep = len;
            if (i + 1 < got)
                rte_prefetch0(rte_pktmbuf_mtod(burst[i + 1], void *));
            if (unlikely(len > slot_size)) {
                keep = slot_size;
                p->truncated++;
            }
            copy_out(slots + (size_t)(n + i) * slot_size, m, keep);
            lengths[n + i] = len;
            if (timestamps != NULL)
                timestamps[n + i] = (m->ol_flags & p->ts_flag)
                                        ? *RTE_MBUF_DYNFIELD(m, p->ts_offset, const rte_mbuf_timestamp_t *)
                                        : 0;
        }
        rte_pktmbuf_free_bulk(burst, got);
        n += got;
        if (got < want)
            break; /* the queue is drained for now */
    }
    return n;
}

uint32_t wb_tx(uint16_t port_id, const uint8_t *slots, uint32_t slot_size, const uint32_t *lengths,
               uint32_t count)
{
    struct rte_mbuf *burst[WB_BURST];
    struct wb_port *p;
    uint32_t sent = 0;

    if (port_id >= RTE_MAX_ETHPORTS || ports[port_id].pool == NULL)
        return 0;
    p = &ports[port_id];
    while (sent < count) {
        uint16_t want = count - sent < WB_BURST ? (uint16_t)(count - sent) : WB_BURST;
        uint16_t done;
        if (rte_pktmbuf_alloc_bulk(p->pool, burst, want) != 0)
            break;
        for (uint16_t i = 0; i < want; i++) {
            uint32_t len = lengths[sent + i];
            char *dst = NULL;
            if (likely(len > 0 && len <= p->max_tx_frame && len <= slot_size))
                dst = rte_pktmbuf_append(burst[i], (uint16_t)len);
            if (unlikely(dst == NULL)) { /* refused: the Python side checks lengths before calling */
                rte_pktmbuf_free_bulk(burst, want);
                return sent;
            }
            rte_memcpy(dst, slots + (size_t)(sent + i) * slot_size, len);
        }
        done = rte_eth_tx_burst(port_id, 0, burst, want);
        if (done < want)
            rte_pktmbuf_free_bulk(burst + done, want - done);
        sent += done;
        if (done < want)
            break;
    }
    return sent;
}

int wb_port_stats(uint16_t port_id, struct wb_stats *out)
{
    struct rte_eth_stats s;
    int ret = rte_eth_stats_get(port_id, &s);
    if (ret != 0)
        return ret;
    out->ipackets = s.ipackets;
    out->ibytes = s.ibytes;
    out->imissed = s.imissed;
    out->ierrors = s.ierrors;
    out->rx_nombuf = s.rx_nombuf;
    out->opackets = s.opackets;
    out->obytes = s.obytes;
    out->oerrors = s.oerrors;
    out->truncated = port_id < RTE_MAX_ETHPORTS ? ports[port_id].truncated : 0;
    return 0;
}

int wb_port_stats_reset(uint16_t port_id)
{
    if (port_id < RTE_MAX_ETHPORTS)
        ports[port_id].truncated = 0;
    return rte_eth_stats_reset(port_id);
}
