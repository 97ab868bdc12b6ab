// The simulated card (card_api.h) over the Verilated core.
//
// Built by sim/verilated_card.py: Verilator compiles `card_top` (the FeedHandler core behind one register
// on every input, see registered_inputs_verilog there) with this file into one shared library per set of
// core parameters, with WB_DATA_WIDTH and WB_AXIL_ADDRESS_BITS defined to match them.
//
// One cycle (wb_card::cycle): set the inputs of the cycle, clock (the input registers hand them to the
// core as the cycle starts), then read the core's settled outputs and the handshakes they make with those
// inputs. A handshake seen there completes at the next edge whatever is set next, so the host-side state
// (queues, ring, CSR access) advances at once. Inputs follow the AXI rules: a beat once offered stays
// offered until taken, so random idle cycles fall only between beats.

#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <new>
#include <vector>

#include "Vcard.h"
#include "card_api.h"
#include "verilated.h"

#ifndef WB_DATA_WIDTH
#error "WB_DATA_WIDTH (the core's data_width) must be defined"
#endif
#ifndef WB_AXIL_ADDRESS_BITS
#error "WB_AXIL_ADDRESS_BITS (the core's CSR address width) must be defined"
#endif

// The library is compiled with hidden visibility and only the C API exported, so that two libraries
// (cores of different parameters, each holding all of Verilator's runtime) can share a process.
#define WB_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr int BEAT_BYTES = WB_DATA_WIDTH / 8;
constexpr int RECORD_BYTES = WB_CARD_RECORD_BYTES;
constexpr int RECORD_WORDS = RECORD_BYTES / 4;
static_assert(BEAT_BYTES == 1 || BEAT_BYTES == 4 || BEAT_BYTES == 8, "data_width is 8, 32 or 64 bits");

// A reproducible coin: true with the probability given to set(); splitmix64 seeds a xorshift64*.
class Coin {
  public:
    bool set(double probability, uint64_t seed) {
        if (!(probability >= 0.0 && probability < 1.0)) return false;
        threshold_ = static_cast<uint64_t>(probability * 18446744073709551616.0);  // 2^64
        uint64_t z = seed + 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        state_ = (z ^ (z >> 31)) | 1;  // xorshift never leaves 0
        return true;
    }
    bool toss() {
        if (threshold_ == 0) return false;
        state_ ^= state_ >> 12;
        state_ ^= state_ << 25;
        state_ ^= state_ >> 27;
        return state_ * 0x2545F4914F6CDD1Dull < threshold_;
    }

  private:
    uint64_t threshold_ = 0;
    uint64_t state_ = 1;
};

// One beat of a frame as tdata / tkeep / tlast (first byte in the lowest lane).
struct Beat {
    uint64_t data = 0;
    uint64_t keep = 0;
    bool last = false;
    int bytes = 0;
};

// One feed input: the frames waiting, where the next beat starts in the front one, and the beat on the
// bus when `offering`.
struct Line {
    std::deque<std::vector<uint8_t>> frames;
    size_t offset = 0;
    int64_t queued_bytes = 0;
    bool offering = false;
    Beat beat;
    Coin idle;

    void clear() {
        frames.clear();
        offset = 0;
        queued_bytes = 0;
        offering = false;
    }

    Beat front_beat() const {
        const std::vector<uint8_t>& frame = frames.front();
        Beat b;
        b.bytes = static_cast<int>(std::min<size_t>(BEAT_BYTES, frame.size() - offset));
        for (int k = 0; k < b.bytes; ++k) b.data |= static_cast<uint64_t>(frame[offset + k]) << (8 * k);
        b.keep = (1ull << b.bytes) - 1;
        b.last = offset + b.bytes == frame.size();
        return b;
    }

    void taken() {
        offering = false;
        offset += beat.bytes;
        queued_bytes -= beat.bytes;
        if (beat.last) {
            frames.pop_front();
            offset = 0;
        }
    }
};

// The AXI4-Lite transaction in flight: the channels whose VALID is up and not yet handed over, the
// response awaited, and the answer once it came.
struct AxilAccess {
    bool aw = false, w = false, ar = false;
    bool write = false, read = false;
    bool done = false;
    uint32_t address = 0, data = 0, strb = 0;
    int resp = 0;
};

}  // namespace

struct wb_card {
    std::unique_ptr<VerilatedContext> context;
    std::unique_ptr<Vcard> top;
    Line lines[WB_CARD_LINES];
    std::vector<uint8_t> ring;  // `capacity` records, a circular buffer: `count` of them from `head`
    int64_t capacity = 0, head = 0, count = 0;
    Coin backpressure;
    bool record_ready = false;  // m_axis_bbo_tready in the current cycle
    AxilAccess axil;
    bool reset = false;
    uint64_t cycles = 0;
    uint64_t stalled_cycles = 0;

    // One clock cycle; true when it was quiet (see wb_card_run).
    bool cycle() {
        set_inputs();
        top->clk = 0;
        top->eval();
        top->clk = 1;
        top->eval();
        ++cycles;

        Vcard& t = *top;
        const bool record_offered = t.m_axis_bbo_tvalid;
        const bool record_moved = record_offered && record_ready;
        if (record_moved) take_record();
        const bool ready[WB_CARD_LINES] = {static_cast<bool>(t.s_axis_a_tready),
                                           static_cast<bool>(t.s_axis_b_tready)};
        for (int i = 0; i < WB_CARD_LINES; ++i) {
            if (!lines[i].offering) continue;
            if (ready[i]) {
                lines[i].taken();
            } else if (record_ready) {
                ++stalled_cycles;
            }
        }
        sample_axil();
        const bool inputs_empty = lines[0].frames.empty() && lines[1].frames.empty();
        return inputs_empty && !record_moved && !(record_offered && count < capacity);
    }

    void set_inputs() {
        for (Line& line : lines) {
            if (!line.offering && !reset && !line.frames.empty() && !line.idle.toss()) {
                line.offering = true;
                line.beat = line.front_beat();
            }
        }
        record_ready = !reset && count < capacity && !backpressure.toss();
        Vcard& t = *top;
        t.rst = reset;
        t.s_axis_a_tvalid = lines[0].offering;
        t.s_axis_a_tdata = lines[0].beat.data;
        t.s_axis_a_tkeep = lines[0].beat.keep;
        t.s_axis_a_tlast = lines[0].beat.last;
        t.s_axis_b_tvalid = lines[1].offering;
        t.s_axis_b_tdata = lines[1].beat.data;
        t.s_axis_b_tkeep = lines[1].beat.keep;
        t.s_axis_b_tlast = lines[1].beat.last;
        t.m_axis_bbo_tready = record_ready;
        t.s_axil_awvalid = axil.aw;
        t.s_axil_awaddr = axil.address;
        t.s_axil_awprot = 0;
        t.s_axil_wvalid = axil.w;
        t.s_axil_wdata = axil.data;
        t.s_axil_wstrb = axil.strb;
        t.s_axil_bready = 1;
        t.s_axil_arvalid = axil.ar;
        t.s_axil_araddr = axil.address;
        t.s_axil_arprot = 0;
        t.s_axil_rready = 1;
    }

    void take_record() {
        uint8_t* out = ring.data() + ((head + count) % capacity) * RECORD_BYTES;
        for (int w = 0; w < RECORD_WORDS; ++w) {
            const uint32_t word = top->m_axis_bbo_tdata[w];
            for (int k = 0; k < 4; ++k) out[4 * w + k] = static_cast<uint8_t>(word >> (8 * k));
        }
        ++count;
    }

    void sample_axil() {
        Vcard& t = *top;
        if (axil.aw && t.s_axil_awready) axil.aw = false;
        if (axil.w && t.s_axil_wready) axil.w = false;
        if (axil.ar && t.s_axil_arready) axil.ar = false;
        if (axil.write && !axil.aw && !axil.w && t.s_axil_bvalid) {
            axil.resp = t.s_axil_bresp;
            axil.write = false;
            axil.done = true;
        }
        if (axil.read && !axil.ar && t.s_axil_rvalid) {
            axil.resp = t.s_axil_rresp;
            axil.data = t.s_axil_rdata;
            axil.read = false;
            axil.done = true;
        }
    }

    // Clock until the transaction set up in `axil` is answered: its response (and a read's data), or
    // WB_CARD_AXIL_TIMEOUT.
    int finish_axil(uint32_t* data) {
        for (int i = 0; i < WB_CARD_AXIL_TIMEOUT_CYCLES; ++i) {
            cycle();
            if (axil.done) {
                const int resp = axil.resp;
                if (data != nullptr) *data = axil.data;
                axil = AxilAccess();
                return resp;
            }
        }
        axil = AxilAccess();
        return WB_CARD_AXIL_TIMEOUT;
    }
};

namespace {

bool in_window(uint32_t address) {
    return address % 4 == 0 && (WB_AXIL_ADDRESS_BITS >= 32 || address >> WB_AXIL_ADDRESS_BITS == 0);
}

}  // namespace

WB_EXPORT int wb_card_data_width(void) { return WB_DATA_WIDTH; }

WB_EXPORT int wb_card_axil_address_bits(void) { return WB_AXIL_ADDRESS_BITS; }

WB_EXPORT wb_card* wb_card_open(int64_t ring_records) {
    if (ring_records < 1) return nullptr;
    wb_card* card = new (std::nothrow) wb_card;
    if (card == nullptr) return nullptr;
    try {
        card->context.reset(new VerilatedContext);
        card->context->randReset(0);  // registers without a declared value start at 0
        card->top.reset(new Vcard(card->context.get(), "card"));
        card->ring.resize(static_cast<size_t>(ring_records) * RECORD_BYTES);
    } catch (const std::bad_alloc&) {
        delete card;
        return nullptr;
    }
    card->capacity = ring_records;
    wb_card_reset(card, 4);
    return card;
}

WB_EXPORT void wb_card_close(wb_card* card) {
    if (card == nullptr) return;
    card->top->final();
    delete card;
}

WB_EXPORT void wb_card_reset(wb_card* card, int cycles) {
    for (Line& line : card->lines) line.clear();
    card->head = card->count = 0;
    card->axil = AxilAccess();
    card->reset = true;
    for (int i = 0; i < std::max(cycles, 1); ++i) card->cycle();
    card->reset = false;
    for (int i = 0; i < 2; ++i) card->cycle();
}

WB_EXPORT int wb_card_push_frame(wb_card* card, int line, const uint8_t* data, int64_t length) {
    if (line < 0 || line >= WB_CARD_LINES || data == nullptr || length < 1) return WB_CARD_BAD_ARGUMENT;
    Line& l = card->lines[line];
    l.frames.emplace_back(data, data + length);
    l.queued_bytes += length;
    return 0;
}

WB_EXPORT int64_t wb_card_queued_bytes(const wb_card* card, int line) {
    if (line < 0 || line >= WB_CARD_LINES) return WB_CARD_BAD_ARGUMENT;
    return card->lines[line].queued_bytes;
}

WB_EXPORT int64_t wb_card_run(wb_card* card, int64_t max_cycles, int64_t quiet_cycles) {
    int64_t ran = 0, quiet = 0;
    while (ran < max_cycles) {
        quiet = card->cycle() ? quiet + 1 : 0;
        ++ran;
        if (quiet_cycles > 0 && quiet >= quiet_cycles) break;
    }
    return ran;
}

WB_EXPORT int64_t wb_card_records_waiting(const wb_card* card) { return card->count; }

WB_EXPORT int64_t wb_card_ring_capacity(const wb_card* card) { return card->capacity; }

WB_EXPORT int64_t wb_card_pop_records(wb_card* card, uint8_t* out, int64_t max_records) {
    const int64_t n = std::max<int64_t>(0, std::min(max_records, card->count));
    for (int64_t copied = 0; copied < n;) {  // at most two runs: to the ring's end, then from its start
        const int64_t run = std::min(n - copied, card->capacity - card->head);
        std::memcpy(out + copied * RECORD_BYTES, card->ring.data() + card->head * RECORD_BYTES,
                    static_cast<size_t>(run) * RECORD_BYTES);
        copied += run;
        card->head = (card->head + run) % card->capacity;
        card->count -= run;
    }
    return n;
}

WB_EXPORT int wb_card_axil_read(wb_card* card, uint32_t address, uint32_t* data) {
    if (!in_window(address) || data == nullptr) return WB_CARD_BAD_ARGUMENT;
    card->axil = AxilAccess();
    card->axil.address = address;
    card->axil.ar = card->axil.read = true;
    return card->finish_axil(data);
}

WB_EXPORT int wb_card_axil_write(wb_card* card, uint32_t address, uint32_t data, uint32_t strb) {
    if (!in_window(address) || strb > 0xF) return WB_CARD_BAD_ARGUMENT;
    card->axil = AxilAccess();
    card->axil.address = address;
    card->axil.data = data;
    card->axil.strb = strb;
    card->axil.aw = card->axil.w = card->axil.write = true;
    return card->finish_axil(nullptr);
}

WB_EXPORT uint64_t wb_card_cycles(const wb_card* card) { return card->cycles; }

WB_EXPORT uint64_t wb_card_stalled_cycles(const wb_card* card) { return card->stalled_cycles; }

WB_EXPORT int wb_card_set_idle(wb_card* card, double probability, uint64_t seed) {
    for (int i = 0; i < WB_CARD_LINES; ++i) {
        if (!card->lines[i].idle.set(probability, seed + i)) return WB_CARD_BAD_ARGUMENT;
    }
    return 0;
}

WB_EXPORT int wb_card_set_backpressure(wb_card* card, double probability, uint64_t seed) {
    return card->backpressure.set(probability, seed) ? 0 : WB_CARD_BAD_ARGUMENT;
}
