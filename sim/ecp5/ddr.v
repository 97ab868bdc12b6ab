// IDDRX1F and ODDRX1F, the ECP5's generic x1 DDR I/O registers: behavioural models for simulating the board
// top (sim/board_sim.py), register for register as Lattice's own simulation models (Diamond's ECP5 library,
// ecp5u IDDRX1F.v / ODDRX1F.v) and TN1265 ("ECP5 and ECP5-5G High-Speed I/O Interface", GDDRX1 interfaces)
// describe them. GSR (the global reset) is what the initial values stand for: every register starts at 0.

// IDDRX1F: D is sampled on each rising edge of SCLK and on the falling edge after it; on the next rising
// edge both are presented together, Q0 = the rising-edge sample, Q1 = the falling-edge sample (Lattice's
// model: QP <= D on the rise, QN <= D on the fall, then Q0 <= QP, Q1 <= QN on the next rise). So a rise and
// the fall after it make one pair: RGMII's bits 3:0 and 7:4 of one byte, as hw/eth/rgmii.py's RgmiiRx takes
// them (tests/hw/test_eth.py's DDRModel pairs them the same way). RST clears every register at once.
//
// Timing check, model only: D must not change within T_SETUP before or T_HOLD after a sampling edge (either
// edge of SCLK); the simulation stops with $fatal if it does. Zero-delay simulation has no clock insertion
// delay, so a sample taken on the edge D changes at would depend on the simulator's event order; the check
// refuses that, and shows whether the input delay (DELAYG) puts the sampling point inside the data eye. The
// windows are a margin of the order of the data sheet's generic DDR setup and hold (DS1044), not sign-off
// timing; time 0 (initial values settling) is not checked. Times in ns (1 ns time unit).
module IDDRX1F #(
    parameter GSR = "ENABLED",
    parameter real T_SETUP = 0.5,  // model only, ns
    parameter real T_HOLD = 0.5  // model only, ns
) (
    input D,
    input SCLK,
    input RST,
    output reg Q0 = 1'b0,
    output reg Q1 = 1'b0
);
    reg rise = 1'b0, fall = 1'b0;

    always @(posedge SCLK or posedge RST) begin
        if (RST) begin
            rise <= 1'b0;
            Q0 <= 1'b0;
            Q1 <= 1'b0;
        end else begin
            rise <= D;
            Q0 <= rise;
            Q1 <= fall;
        end
    end

    always @(negedge SCLK or posedge RST) begin
        if (RST) fall <= 1'b0;
        else fall <= D;
    end

    realtime last_change = -1.0e9, last_edge = -1.0e9;

    always @(D) begin
        if ($realtime > 0 && $realtime - last_edge < T_HOLD)
            $fatal(1, "IDDRX1F %m: D changed %0.3f ns after an SCLK edge (hold %0.3f ns)",
                   $realtime - last_edge, T_HOLD);
        last_change = $realtime;
    end

    always @(SCLK) begin
        if ($realtime > 0 && $realtime - last_change < T_SETUP)
            $fatal(1, "IDDRX1F %m: D changed %0.3f ns before an SCLK edge (setup %0.3f ns)",
                   $realtime - last_change, T_SETUP);
        last_edge = $realtime;
    end
endmodule

// ODDRX1F: D0 and D1 are taken on a rising edge of SCLK and go through two more register stages; the pin
// then shows D0 while SCLK is high and D1 while it is low, in the second cycle after the one that took them.
// Lattice's model, stage by stage: QP0 <= D0, QN0 <= D1 on a rise; R0 <= QP0, F0 <= QN0, F0_reg <= F0 on
// the next rise; R0_reg <= R0 on the fall; Q = SCLK ? R0_reg : F0_reg. Amaranth's ECP5 DDRBuffer delays its
// output enable by the same two cycles for that reason (amaranth-lang/amaranth#1668, from the same model).
// RGMII's clock, control and data all leave through ODDRX1Fs (hw/eth/rgmii.py), so the pipeline moves them
// together and the PHY sees them aligned. RST clears every register at once.
module ODDRX1F #(
    parameter GSR = "ENABLED"
) (
    input D0,
    input D1,
    input SCLK,
    input RST,
    output Q
);
    reg d0_taken = 1'b0, d1_taken = 1'b0;  // QP0, QN0
    reg d0_held = 1'b0, d1_held = 1'b0;  // R0, F0
    reg d0_out = 1'b0, d1_out = 1'b0;  // R0_reg, F0_reg

    always @(posedge SCLK or posedge RST) begin
        if (RST) begin
            {d0_taken, d1_taken, d0_held, d1_held, d1_out} <= 5'b0;
        end else begin
            d0_taken <= D0;
            d1_taken <= D1;
            d0_held <= d0_taken;
            d1_held <= d1_taken;
            d1_out <= d1_held;
        end
    end

    always @(negedge SCLK or posedge RST) begin
        if (RST) d0_out <= 1'b0;
        else d0_out <= d0_held;
    end

    assign Q = SCLK ? d0_out : d1_out;
endmodule
