/*
 * fuzz_headers.c — the header section of a message (smtpd/headers.c),
 * asked of the whole message and of the same bytes streaming by in pieces,
 * as the SMTP session reads them in DATA.
 *
 * Input: byte 0 seeds the piece sizes (some pieces empty); the rest is the
 * message. Properties:
 *   - the scan agrees with the whole-message functions: where the section
 *     ends and how (headers_end), the Received: count
 *     (headers_count_received, itself equal to headers_count of
 *     "Received"), and whether Date: and Message-ID: are there
 *     (headers_has);
 *   - after every piece, settled never goes back nor past what was fed; what
 *     is undecided, [settled, fed), is at most HEADERS_UNDECIDED_MAX octets
 *     of one line, no line end in it; once done, a feed reads nothing, and
 *     in all the scan reads at most one line past the section's end;
 *   - the section alone, msg[0..end), gives the same answers: ending a
 *     message where its section ends changes nothing (the SMTP session
 *     inserts fields there).
 */
#include "fuzz.h"
#include "headers.h"

/* The scan of p[0..n) fed whole, then finished. */
static void scan_all(struct headers_scan *sc, const uint8_t *p, size_t n)
{
    headers_scan_init(sc);
    headers_scan_feed(sc, (const char *)p, n);
    headers_scan_finish(sc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct fuzz_rng rd;
    fuzz_rng_init(&rd, data[0]);
    const char *msg = (const char *)data + 1;
    size_t len = size - 1;

    size_t hdr_len = 0, body = 0;
    bool empty_line = headers_end(msg, len, &hdr_len, &body) == 1;
    int received = headers_count_received(msg, len);
    unsigned seen = (headers_has(msg, len, "Date") ? HEADERS_DATE : 0) |
                    (headers_has(msg, len, "Message-ID") ? HEADERS_MESSAGE_ID : 0);
    FUZZ_CHECK(headers_count(msg, len, "received") == received, "headers_count disagrees");
    FUZZ_CHECK(hdr_len <= body && body <= len, "headers_end: %zu, %zu of %zu", hdr_len, body, len);

    struct headers_scan sc;
    headers_scan_init(&sc);
    size_t at = 0;
    uint64_t settled = 0;
    while (at < len) {
        size_t k = fuzz_rng_below(&rd, 8) == 0 ? 0 : fuzz_piece(&rd, len - at);
        bool was_done = sc.done;
        size_t used = headers_scan_feed(&sc, msg + at, k);
        FUZZ_CHECK(used <= k, "feed read %zu of %zu", used, k);
        FUZZ_CHECK(!was_done || used == 0, "a feed read %zu octets after the end", used);
        FUZZ_CHECK(sc.done || used == k, "a feed stopped early, not done");
        FUZZ_CHECK(sc.settled >= settled, "settled went back");
        settled = sc.settled;
        FUZZ_CHECK(sc.settled <= sc.fed, "settled past what was fed");
        if (!sc.done) {
            FUZZ_CHECK(sc.fed == at + k, "fed %llu, not %zu", (unsigned long long)sc.fed, at + k);
            FUZZ_CHECK(sc.fed - sc.settled <= HEADERS_UNDECIDED_MAX, "%llu undecided",
                       (unsigned long long)(sc.fed - sc.settled));
            FUZZ_CHECK(memchr(msg + sc.settled, '\n', sc.fed - sc.settled) == NULL &&
                           memchr(msg + sc.settled, '\r', sc.fed - sc.settled) == NULL,
                       "undecided octets span a line end");
        }
        at += k;
    }
    headers_scan_finish(&sc);
    FUZZ_CHECK(sc.done && sc.settled == sc.end, "finish left the scan open");
    FUZZ_CHECK(sc.end == hdr_len, "the scan ends the section at %llu, headers_end at %zu",
               (unsigned long long)sc.end, hdr_len);
    FUZZ_CHECK(sc.empty_line == empty_line, "the scan and headers_end disagree on the empty line");
    FUZZ_CHECK(sc.received == received, "the scan counts %d Received:, headers_count_received %d",
               sc.received, received);
    FUZZ_CHECK(sc.seen == seen, "the scan saw fields %#x, headers_has %#x", sc.seen, seen);
    FUZZ_CHECK(sc.fed <= sc.end + HEADERS_LINE_MAX, "read %llu octets past the end",
               (unsigned long long)(sc.fed - sc.end));

    /* The section alone answers the same. */
    struct headers_scan alone;
    scan_all(&alone, data + 1, hdr_len);
    FUZZ_CHECK(alone.end == hdr_len && !alone.empty_line && alone.received == received &&
                   alone.seen == seen,
               "the header section alone answers differently");
    FUZZ_CHECK(headers_count_received(msg, hdr_len) == received,
               "headers_count_received of the section alone differs");
    return 0;
}
