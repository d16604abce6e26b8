/*
 * fuzz_smtp_parser.c — the SMTP byte stream parser (smtpd/smtp_parser.h) in
 * command mode and data mode, switching to data mode after a "DATA" line as
 * the session does after its 354.
 *
 * Input: byte 0 picks the read boundaries (and, in its top bits, the line
 * limits); the rest is what the client sends. The stream is parsed twice,
 * once in random pieces with the unconsumed bytes kept (as the glue does)
 * and once whole, and both must give the same lines, errors and messages.
 * The properties of each event are in fuzz_smtp.h: whole command lines, one
 * DATA_END exactly at each <CRLF>.<CRLF>, the unstuffed message equal to an
 * independent model, no bare CR or LF in a message with clean flags, and
 * stuffing then unstuffing round-trips.
 */
#include "fuzz.h"
#include "fuzz_smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const size_t line_maxes[] = {0, 4096, 16, 64};
    static const size_t text_maxes[] = {0, 24};
    struct fuzz_smtp_opts o = {
        .line_max = line_maxes[(data[0] >> 6) & 3],
        .text_max = text_maxes[(data[0] >> 5) & 1],
        .data_only = false,
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
               "the read boundaries changed the lines, errors or messages (%zu vs %zu bytes of "
               "transcript)",
               split.len, whole.len);
    fuzz_bytes_free(&split);
    fuzz_bytes_free(&whole);
    return 0;
}
