/*
 * fuzz_smtp_data.c — the DATA scanner of smtpd/smtp_parser.c alone: end of
 * data and dot-unstuffing, message after message.
 *
 * Input: byte 0 picks the read boundaries (and, in bit 5, a small text line
 * limit); the rest is message data as it follows a DATA command's 354. The
 * parser starts in data mode and goes back to it after each DATA_END, so
 * pipelined and smuggled messages are all scanned. Properties (fuzz_smtp.h):
 * one DATA_END exactly at each <CRLF>.<CRLF> and nowhere else, chunks equal
 * to an independent unstuffing model, BARE_EOL exactly when the message
 * holds a bare CR or LF (so a message with clean flags never does), and
 * stuffing then unstuffing round-trips — for each message found and for the
 * whole input taken as one message. Random pieces and one whole feed must
 * agree.
 */
#include "fuzz.h"
#include "fuzz_smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const size_t text_maxes[] = {0, 24};
    struct fuzz_smtp_opts o = {
        .line_max = 0,
        .text_max = text_maxes[(data[0] >> 5) & 1],
        .data_only = true,
        .seed = data[0],
    };
    struct fuzz_bytes split = {0}, whole = {0};
    o.split = true;
    o.roundtrip = true;
    fuzz_smtp_run(data + 1, size - 1, &o, &split);
    o.split = false;
    o.roundtrip = false;
    fuzz_smtp_run(data + 1, size - 1, &o, &whole);
    FUZZ_CHECK(fuzz_bytes_eq(&split, &whole),
               "the read boundaries changed the messages (%zu vs %zu bytes of transcript)",
               split.len, whole.len);
    /* The whole input as the text of one message: stuff it, end it, get it back. */
    o.split = true;
    fuzz_smtp_roundtrip(data + 1, size - 1, &o);
    fuzz_bytes_free(&split);
    fuzz_bytes_free(&whole);
    return 0;
}
