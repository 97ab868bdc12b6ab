// EHXPLLL, the ECP5 sysCLOCK PLL: a behavioural model for simulating the board top (sim/board_sim.py).
//
// What it does, as the silicon does (Lattice TN1263 "ECP5 sysCLOCK PLL/DLL Design and Usage Guide", and the
// divider equations hw/card_top.py's PllSettings uses):
//   f_PFD   = f_CLKI / CLKI_DIV
//   f_CLKOP = f_PFD * CLKFB_DIV                (feedback from CLKOP: FEEDBK_PATH "CLKOP")
//   f_VCO   = f_CLKOP * CLKOP_DIV,  f_CLKOS = f_VCO / CLKOS_DIV
// f_CLKI is measured: the period between two rising edges of CLKI. The outputs start after that, rising
// together, and are generated from absolute times (no drift from rounding to the time precision). LOCK rises
// once the loop would be locked: CLKFB, divided by CLKFB_DIV, runs at the PFD frequency (within 0.1 %) for
// LOCK_CYCLES PFD cycles. So a CLKFB not wired to CLKOP, or dividers that do not close the loop, leave LOCK
// low, as on the board. RST high stops the outputs and drops LOCK until CLKI is measured again.
//
// What it checks (simulation stops with $fatal): the input, PFD and VCO frequencies within the ranges of the
// ECP5 data sheet (DS1044: CLKI 8-400 MHz, PFD 3.125-400 MHz, VCO 400-800 MHz); FEEDBK_PATH "CLKOP"; every
// enabled output without phase shift (CPHASE = DIV - 1, FPHASE = 0), the only setting modelled; CLKOS2
// and CLKOS3 disabled (not modelled: they stay low).
//
// Not modelled: the lock time (silicon: up to DS1044's t_LOCK, far longer than LOCK_CYCLES), jitter, dynamic
// phase shifting (PHASESEL/PHASEDIR/PHASESTEP/PHASELOADREG), standby, the internal feedback paths, the
// loop-filter attributes (ICP_CURRENT, LPF_RESISTOR, ...), which only matter to the analogue loop.
// Times are in ns: simulate with a 1 ns time unit (cocotb's runner passes `--timescale 1ns/1ps`).

module EHXPLLL #(
    parameter integer CLKI_DIV = 1,
    parameter integer CLKFB_DIV = 1,
    parameter integer CLKOP_DIV = 8,
    parameter integer CLKOS_DIV = 8,
    parameter integer CLKOS2_DIV = 8,
    parameter integer CLKOS3_DIV = 8,
    parameter CLKOP_ENABLE = "ENABLED",
    parameter CLKOS_ENABLE = "DISABLED",
    parameter CLKOS2_ENABLE = "DISABLED",
    parameter CLKOS3_ENABLE = "DISABLED",
    parameter integer CLKOP_CPHASE = 0,
    parameter integer CLKOS_CPHASE = 0,
    parameter integer CLKOS2_CPHASE = 0,
    parameter integer CLKOS3_CPHASE = 0,
    parameter integer CLKOP_FPHASE = 0,
    parameter integer CLKOS_FPHASE = 0,
    parameter integer CLKOS2_FPHASE = 0,
    parameter integer CLKOS3_FPHASE = 0,
    parameter FEEDBK_PATH = "CLKOP",
    parameter CLKOP_TRIM_POL = "RISING",
    parameter integer CLKOP_TRIM_DELAY = 0,
    parameter CLKOS_TRIM_POL = "RISING",
    parameter integer CLKOS_TRIM_DELAY = 0,
    parameter OUTDIVIDER_MUXA = "DIVA",
    parameter OUTDIVIDER_MUXB = "DIVB",
    parameter OUTDIVIDER_MUXC = "DIVC",
    parameter OUTDIVIDER_MUXD = "DIVD",
    parameter PLL_LOCK_MODE = 0,
    parameter PLL_LOCK_DELAY = 200,
    parameter STDBY_ENABLE = "DISABLED",
    parameter REFIN_RESET = "DISABLED",
    parameter SYNC_ENABLE = "DISABLED",
    parameter INT_LOCK_STICKY = "ENABLED",
    parameter DPHASE_SOURCE = "DISABLED",
    parameter PLLRST_ENA = "DISABLED",
    parameter INTFB_WAKE = "DISABLED",
    parameter integer LOCK_CYCLES = 8  // model only: PFD cycles of a matching feedback before LOCK
) (
    input CLKI,
    input CLKFB,
    input PHASESEL1,
    input PHASESEL0,
    input PHASEDIR,
    input PHASESTEP,
    input PHASELOADREG,
    input STDBY,
    input PLLWAKESYNC,
    input RST,
    input ENCLKOP,
    input ENCLKOS,
    input ENCLKOS2,
    input ENCLKOS3,
    output reg CLKOP = 1'b0,
    output reg CLKOS = 1'b0,
    output CLKOS2,
    output CLKOS3,
    output reg LOCK = 1'b0,
    output INTLOCK,
    output REFCLK,
    output CLKINTFB
);
    assign CLKOS2 = 1'b0;
    assign CLKOS3 = 1'b0;
    assign INTLOCK = LOCK;
    assign REFCLK = CLKI;
    assign CLKINTFB = 1'b0;

    realtime last_in = 0.0, period_in = 0.0;  // CLKI, ns
    realtime last_fb = 0.0, period_fb = 0.0;  // CLKFB, ns
    integer in_edges = 0, fb_matched = 0;
    reg running = 1'b0;  // the outputs toggle
    realtime start = 0.0;  // when they started, ns

    function automatic real mhz(input real period_ns);
        mhz = 1000.0 / period_ns;
    endfunction

    // A check of one output's settings, when enabled: no phase shift (the one setting modelled).
    task automatic check_output(input [8*6-1:0] name, input [8*8-1:0] enable, input integer div,
                                input integer cphase, input integer fphase);
        if (enable == "ENABLED" && (cphase != div - 1 || fphase != 0))
            $fatal(1, "EHXPLLL %m: %0s CPHASE %0d / FPHASE %0d: the model makes no phase shift (CPHASE %0d, FPHASE 0)",
                   name, cphase, fphase, div - 1);
        if (enable == "ENABLED" && (div < 1 || div > 128))
            $fatal(1, "EHXPLLL %m: %0s_DIV %0d outside 1-128", name, div);
    endtask

    initial begin
        if (FEEDBK_PATH != "CLKOP")
            $fatal(1, "EHXPLLL %m: FEEDBK_PATH %0s: the model closes the loop through CLKOP only", FEEDBK_PATH);
        if (CLKI_DIV < 1 || CLKI_DIV > 128 || CLKFB_DIV < 1 || CLKFB_DIV > 128)
            $fatal(1, "EHXPLLL %m: CLKI_DIV %0d / CLKFB_DIV %0d outside 1-128", CLKI_DIV, CLKFB_DIV);
        check_output("CLKOP", CLKOP_ENABLE, CLKOP_DIV, CLKOP_CPHASE, CLKOP_FPHASE);
        check_output("CLKOS", CLKOS_ENABLE, CLKOS_DIV, CLKOS_CPHASE, CLKOS_FPHASE);
        if (CLKOS2_ENABLE == "ENABLED" || CLKOS3_ENABLE == "ENABLED")
            $fatal(1, "EHXPLLL %m: CLKOS2 / CLKOS3 enabled: the model makes CLKOP and CLKOS only");
    end

    // The input: measured from two rising edges; then the ranges are checked and the outputs start.
    always @(posedge CLKI or posedge RST) begin
        if (RST) begin
            in_edges <= 0;
            running <= 1'b0;
        end else begin
            if (in_edges >= 1) begin
                period_in = $realtime - last_in;
                if (!running) begin
                    if (mhz(period_in) < 8.0 || mhz(period_in) > 400.0)
                        $fatal(1, "EHXPLLL %m: CLKI %f MHz outside 8-400 MHz", mhz(period_in));
                    if (mhz(period_in) / CLKI_DIV < 3.125 || mhz(period_in) / CLKI_DIV > 400.0)
                        $fatal(1, "EHXPLLL %m: PFD %f MHz outside 3.125-400 MHz", mhz(period_in) / CLKI_DIV);
                    if (mhz(period_in) / CLKI_DIV * CLKFB_DIV * CLKOP_DIV < 400.0
                        || mhz(period_in) / CLKI_DIV * CLKFB_DIV * CLKOP_DIV > 800.0)
                        $fatal(1, "EHXPLLL %m: VCO %f MHz outside 400-800 MHz",
                               mhz(period_in) / CLKI_DIV * CLKFB_DIV * CLKOP_DIV);
                    start = $realtime;
                    running <= 1'b1;
                end
            end
            last_in = $realtime;
            in_edges <= in_edges + 1;
        end
    end

    // The outputs: high for the first half of each period, from `start`; CLKOS's period is CLKOP's
    // * CLKOS_DIV / CLKOP_DIV (both divide the VCO). Each delay runs to an absolute time, so it is not known
    // statically (Verilator's ZERODLY).
    /* verilator lint_off ZERODLY */
    always begin : clkop_output
        realtime half;
        integer k;
        wait (running);
        half = period_in * CLKI_DIV / CLKFB_DIV / 2.0;
        for (k = 0; running && CLKOP_ENABLE == "ENABLED"; k = k + 1) begin
            CLKOP = ~k[0];
            #(start + (k + 1) * half - $realtime);
        end
        CLKOP = 1'b0;
        wait (!running);
    end

    always begin : clkos_output
        realtime half;
        integer k;
        wait (running);
        half = period_in * CLKI_DIV / CLKFB_DIV * CLKOP_DIV / CLKOS_DIV / 2.0;
        for (k = 0; running && CLKOS_ENABLE == "ENABLED"; k = k + 1) begin
            CLKOS = ~k[0];
            #(start + (k + 1) * half - $realtime);
        end
        CLKOS = 1'b0;
        wait (!running);
    end

    /* verilator lint_on ZERODLY */

    // Lock: the feedback, divided by CLKFB_DIV, at the PFD frequency, for LOCK_CYCLES PFD cycles.
    always @(posedge CLKFB or negedge running) begin
        if (!running) begin
            fb_matched <= 0;
            LOCK <= 1'b0;
        end else begin
            period_fb = $realtime - last_fb;
            last_fb = $realtime;
            if (period_fb * CLKFB_DIV > 0.999 * period_in * CLKI_DIV
                && period_fb * CLKFB_DIV < 1.001 * period_in * CLKI_DIV) begin
                fb_matched <= fb_matched + 1;
                if (fb_matched + 1 >= LOCK_CYCLES * CLKFB_DIV)
                    LOCK <= 1'b1;
            end else begin
                fb_matched <= 0;
                LOCK <= 1'b0;
            end
        end
    end
endmodule
