// DP16KD, the ECP5's 18 Kbit true dual-port block RAM (EBR): a behavioural model for simulating the board top
// (sim/board_sim.py), of the configuration hw/eth/mac.py's FrameFIFO instantiates, as Lattice's ECP5 memory
// guide (TN1264, "ECP5 and ECP5-5G Memory Usage Guide", True Dual Port RAM) describes it:
// - both ports 2048 x 9 (DATA_WIDTH 9): the word address on AD13..AD3, AD2..AD0 ignored; data DI8..DI0 / DO8..DO0;
// - port A writes (WEA with CEA on a rising CLKA; WRITEMODE NORMAL), its read output unused;
// - port B reads: on a rising CLKB with CEB the word at ADB is read into the port's latch; with REGMODE_B
//   "OUTREG" a second register, enabled by OCEB, takes the latch on each rising CLKB and drives DOB (so DOB
//   shows a word two edges after its address); with "NOREG" the latch drives DOB.
// - chip selects: CSDECODE "0b000" with CS 0 (selected); RST low. A word read on the edge that writes it
//   reads its old value here; the silicon's is undefined, so a design must not use it (FrameFIFO reads an
//   empty buffer's next slot and throws the word away).
// Anything else stops the simulation at time 0 with $fatal, rather than simulating what the model does not
// know. Initial contents and registers: 0.
module DP16KD #(
    parameter integer DATA_WIDTH_A = 18,
    parameter integer DATA_WIDTH_B = 18,
    parameter REGMODE_A = "NOREG",
    parameter REGMODE_B = "NOREG",
    parameter RESETMODE = "SYNC",
    parameter ASYNC_RESET_RELEASE = "SYNC",
    parameter CSDECODE_A = "0b000",
    parameter CSDECODE_B = "0b000",
    parameter WRITEMODE_A = "NORMAL",
    parameter WRITEMODE_B = "NORMAL",
    parameter GSR = "ENABLED"
) (
    input DIA0, DIA1, DIA2, DIA3, DIA4, DIA5, DIA6, DIA7, DIA8,
    input ADA0, ADA1, ADA2, ADA3, ADA4, ADA5, ADA6, ADA7, ADA8, ADA9, ADA10, ADA11, ADA12, ADA13,
    input CEA, OCEA, CLKA, WEA, RSTA, CSA0, CSA1, CSA2,
    input ADB0, ADB1, ADB2, ADB3, ADB4, ADB5, ADB6, ADB7, ADB8, ADB9, ADB10, ADB11, ADB12, ADB13,
    input CEB, OCEB, CLKB, WEB, RSTB, CSB0, CSB1, CSB2,
    output DOB0, DOB1, DOB2, DOB3, DOB4, DOB5, DOB6, DOB7, DOB8
);
    reg [8:0] words [0:2047];
    reg [8:0] latch = 9'd0, out = 9'd0;
    wire [10:0] write_at = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3};
    wire [10:0] read_at = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3};
    wire [8:0] write_data = {DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
    wire selected_a = {CSA2, CSA1, CSA0} == 3'b000;
    wire selected_b = {CSB2, CSB1, CSB0} == 3'b000;
    integer k;

    initial begin
        if (DATA_WIDTH_A != 9 || DATA_WIDTH_B != 9)
            $fatal(1, "DP16KD %m: the model is 2048 x 9 on both ports, not %0d / %0d bits", DATA_WIDTH_A, DATA_WIDTH_B);
        if (REGMODE_A != "NOREG" || (REGMODE_B != "NOREG" && REGMODE_B != "OUTREG"))
            $fatal(1, "DP16KD %m: REGMODE_A %0s, REGMODE_B %0s not modelled", REGMODE_A, REGMODE_B);
        if (CSDECODE_A != "0b000" || CSDECODE_B != "0b000" || WRITEMODE_A != "NORMAL")
            $fatal(1, "DP16KD %m: chip-select decode or write mode not modelled");
        for (k = 0; k < 2048; k = k + 1) words[k] = 9'd0;
    end

    always @(posedge CLKA) begin
        if (RSTA) $fatal(1, "DP16KD %m: RSTA is not modelled");
        if (CEA && WEA && selected_a) words[write_at] <= write_data;
    end

    always @(posedge CLKB) begin
        if (RSTB || WEB) $fatal(1, "DP16KD %m: port B is read-only in the model (WEB, RSTB low)");
        if (CEB && selected_b) latch <= words[read_at];
        if (OCEB) out <= latch;
    end

    assign {DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = REGMODE_B == "OUTREG" ? out : latch;
endmodule
