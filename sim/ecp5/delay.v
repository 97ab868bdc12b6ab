// DELAYG, the ECP5's fixed input/output delay element: a behavioural model for simulating the board top
// (sim/board_sim.py).
//
// Z follows A DEL_VALUE taps later, 25 ps a tap (the nominal step LiteEth's ECP5 RGMII PHY and
// hw/eth/rgmii.py's delay_taps use; DEL_VALUE 0-127). A transport delay: every edge of A comes out, however
// short the pulse, as the silicon's delay line passes an RGMII nibble of 4 ns unchanged at 2 ns.
// Only DEL_MODE "USER_DEFINED" is modelled (the delay is DEL_VALUE); the other modes (SCLK_ALIGNED,
// SCLK_CENTERED, ...) pick a device-calibrated delay that stands for the clock insertion delay, which a
// zero-delay simulation does not have: the simulation stops with $fatal on them.
// Times in ns (1 ns time unit).
module DELAYG #(
    parameter DEL_MODE = "USER_DEFINED",
    parameter integer DEL_VALUE = 0
) (
    input A,
    output reg Z = 1'b0
);
    localparam real TAP = 0.025;  // ns

    initial begin
        if (DEL_MODE != "USER_DEFINED")
            $fatal(1, "DELAYG %m: DEL_MODE %0s: the model makes USER_DEFINED delays only", DEL_MODE);
        if (DEL_VALUE < 0 || DEL_VALUE > 127)
            $fatal(1, "DELAYG %m: DEL_VALUE %0d outside 0-127", DEL_VALUE);
    end

    always @(A) Z <= #(DEL_VALUE * TAP) A;
endmodule
