// The ECP5 programmable I/O cells Amaranth's Lattice platform instantiates for `amaranth.lib.io` buffers
// (amaranth/vendor/_lattice.py): the pad buffers IB, OBZ and BB, and the I/O registers FD1S3AX and OFS1P3DX
// that delay a DDR output's enable. Behavioural models for simulating the board top (sim/board_sim.py), as
// yosys describes them for the same flow (share/lattice/cells_io.vh, cells_ff.vh: TRELLIS_IO, TRELLIS_FF).
// Pad delays are not modelled (zero); GSR is what the registers' initial values stand for (0).

// IB: input pad buffer, O = the pad.
module IB (
    input I,
    output O
);
    assign O = I;
endmodule

// OBZ: output pad buffer with tristate, the pad = I while T (active-high tristate) is low, else released.
module OBZ (
    input I,
    input T,
    output O
);
    assign O = T ? 1'bz : I;
endmodule

// BB: bidirectional pad buffer: drives the pad B with I while T is low, else releases it; O = the pad.
module BB (
    input I,
    input T,
    output O,
    inout B
);
    assign B = T ? 1'bz : I;
    assign O = B;
endmodule

// FD1S3AX: D flip-flop on the rising edge of CK, cleared by GSR only.
module FD1S3AX #(
    parameter GSR = "ENABLED"
) (
    input D,
    input CK,
    output reg Q = 1'b0
);
    always @(posedge CK) Q <= D;
endmodule

// OFS1P3DX: output-register flip-flop: on the rising edge of SCLK takes D when SP (clock enable) is high;
// CD clears it at once.
module OFS1P3DX #(
    parameter GSR = "ENABLED"
) (
    input D,
    input SP,
    input SCLK,
    input CD,
    output reg Q = 1'b0
);
    always @(posedge SCLK or posedge CD) begin
        if (CD) Q <= 1'b0;
        else if (SP) Q <= D;
    end
endmodule
