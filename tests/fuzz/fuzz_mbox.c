/*
 * fuzz_mbox.c — the pure parts of kotak import and export (ctl/mbox.c), on
 * whatever a file may hold.
 *
 * Input: the octets of one message as read from a file. Properties:
 *   - mbox_to_crlf writes exactly mbox_crlf_len octets (at most 2 len + 2),
 *     holds no LF without a CR before it, and ends with CRLF unless empty;
 *   - when mbox_crlf_exact says so of the stored form, export then import
 *     (mbox_from_crlf, mbox_to_crlf) gives the same octets back;
 *   - of each line: a From_ line is one mboxrd quotes; a quoted line loses
 *     exactly the one '>' its quoting added;
 *   - mbox_take_xuidl leaves the message alone when it finds no field, else
 *     shortens it, its value NUL-terminated within the buffer;
 *   - the dovecot-uidlist parsers point only inside the line they read;
 *   - nothing reads or writes out of bounds (the sanitizers).
 */
#include "fuzz.h"
#include "mbox.h"

static void check_line(const char *line, size_t len)
{
    if (mbox_is_from_line(line, len))
        FUZZ_CHECK(mbox_needs_quote(line, len), "a From_ line mboxrd does not quote");
    if (mbox_needs_quote(line, len) && len < 4096) {
        char quoted[4097];
        quoted[0] = '>';
        memcpy(quoted + 1, line, len);
        FUZZ_CHECK(mbox_unquote_len(quoted, len + 1) == 1, "quoting then unquoting is not one '>'");
        FUZZ_CHECK(!mbox_is_from_line(quoted, len + 1), "a quoted line reads as a From_ line");
    }
    FUZZ_CHECK(mbox_unquote_len(line, len) <= len, "unquoting takes more than the line");
    int64_t t;
    if (mbox_from_time(line, len, &t) == 1) {
        char when[25];
        mbox_ctime(t, when);
        FUZZ_CHECK(strlen(when) == 24, "ctime's form is 24 characters");
    }
    int version;
    uint32_t validity;
    (void)mbox_uidlist_header(line, len, &version, &validity);
    for (int v = 1; v <= 3; v += 2) {
        struct mbox_uidlist_rec rec;
        if (mbox_uidlist_record(line, len, v, &rec) == 0) {
            FUZZ_CHECK(rec.name >= line && rec.name + rec.name_len <= line + len,
                       "the file name points outside the line");
            FUZZ_CHECK(rec.pop3_uidl == NULL ||
                           (rec.pop3_uidl >= line && rec.pop3_uidl + rec.pop3_uidl_len <= line + len),
                       "the P field points outside the line");
        }
    }
    char name[256];
    size_t n = len < sizeof(name) - 1 ? len : sizeof(name) - 1;
    memcpy(name, line, n);
    name[n] = '\0';
    (void)mbox_maildir_time(name, &t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = mbox_crlf_len(data, size);
    FUZZ_CHECK(n <= 2 * size + 2, "crlf_len %zu for %zu octets", n, size);
    uint8_t *stored = malloc(n + 1);
    FUZZ_CHECK(mbox_to_crlf(data, size, stored) == n, "to_crlf wrote other than crlf_len");
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(stored[i] != '\n' || (i > 0 && stored[i - 1] == '\r'), "a bare LF at %zu", i);
    FUZZ_CHECK(size == 0 || (n >= 2 && stored[n - 2] == '\r' && stored[n - 1] == '\n'),
               "the stored form does not end with CRLF");

    uint8_t *file = malloc(n + 1);
    size_t flen = mbox_from_crlf(stored, n, file);
    FUZZ_CHECK(flen <= n, "from_crlf grew the message");
    if (mbox_crlf_exact(stored, n)) {
        size_t back_len = mbox_crlf_len(file, flen);
        uint8_t *back = malloc(back_len + 1);
        mbox_to_crlf(file, flen, back);
        FUZZ_CHECK(back_len == n && memcmp(back, stored, n) == 0,
                   "said to round-trip, and does not");
        free(back);
    }

    uint8_t *copy = malloc(size + 1);
    if (size > 0)
        memcpy(copy, data, size);
    size_t clen = size;
    char uidl[72];
    memset(uidl, 'x', sizeof(uidl));
    if (mbox_take_xuidl(copy, &clen, uidl, sizeof(uidl)) == 1) {
        FUZZ_CHECK(clen < size, "a field taken out, and the message no shorter");
        FUZZ_CHECK(memchr(uidl, '\0', sizeof(uidl)) != NULL, "the value is not NUL-terminated");
    } else {
        FUZZ_CHECK(clen == size && (size == 0 || memcmp(copy, data, size) == 0),
                   "no field, and the message changed");
    }

    for (size_t start = 0; start <= size;) {
        const uint8_t *lf = start < size ? memchr(data + start, '\n', size - start) : NULL;
        size_t end = lf != NULL ? (size_t)(lf - data) : size;
        check_line((const char *)data + start, end - start);
        if (lf == NULL)
            break;
        start = end + 1;
    }
    free(stored);
    free(file);
    free(copy);
    return 0;
}
