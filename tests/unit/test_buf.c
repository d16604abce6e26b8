/*
 * test_buf.c — the bounded byte buffer of common/buf.h: appends, the max
 * ceiling (a failed append leaves the buffer unchanged), printf at the
 * ceiling, buf_cstr's NUL past max, binary data and growth.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "tap.h"

/* True when b holds exactly the n bytes of p. */
static int holds(const struct buf *b, const void *p, size_t n)
{
    return b->len == n && (n == 0 || memcmp(b->data, p, n) == 0);
}

static void test_basics(void)
{
    struct buf b;
    buf_init(&b, 0);
    is_int(b.len, 0, "init: empty");
    ok(b.data == NULL, "init: no storage yet");
    is_int(b.max, SIZE_MAX, "init: max 0 means no limit");
    is_str(buf_cstr(&b), "", "cstr of an empty buffer is \"\"");
    is_int(b.len, 0, "cstr does not count its NUL");

    is_int(buf_append(&b, "hello", 5), 0, "append 5 bytes");
    is_int(buf_append_str(&b, ", world"), 0, "append_str");
    is_int(b.len, 12, "len after two appends");
    is_str(buf_cstr(&b), "hello, world", "cstr after appends");
    is_int(b.len, 12, "cstr leaves len alone");

    is_int(buf_append(&b, NULL, 0), 0, "append of 0 bytes (NULL) succeeds");
    is_int(buf_append_str(&b, ""), 0, "append_str of \"\" succeeds");
    is_int(b.len, 12, "empty appends change nothing");

    is_int(buf_printf(&b, " %d-%s-%c", 42, "x", 'y'), 0, "printf appends");
    is_str(buf_cstr(&b), "hello, world 42-x-y", "printf text appended without NUL");
    is_int(b.len, 19, "printf counts only the text");
    is_int(buf_printf(&b, "%s", ""), 0, "printf of empty text");
    is_int(b.len, 19, "printf of empty text adds nothing");

    buf_consume(&b, 7);
    is_str(buf_cstr(&b), "world 42-x-y", "consume 7 drops the front");
    buf_consume(&b, 0);
    is_str(buf_cstr(&b), "world 42-x-y", "consume 0 changes nothing");
    buf_consume(&b, b.len);
    is_int(b.len, 0, "consume all empties");
    is_str(buf_cstr(&b), "", "cstr after consuming all");

    is_int(buf_append_str(&b, "abc"), 0, "append after consume");
    size_t cap = b.cap;
    uint8_t *data = b.data;
    buf_reset(&b);
    is_int(b.len, 0, "reset empties");
    ok(b.cap == cap && b.data == data, "reset keeps the storage");
    is_int(buf_append_str(&b, "xyz"), 0, "append after reset");
    is_str(buf_cstr(&b), "xyz", "content after reset");

    buf_free(&b);
    ok(b.data == NULL && b.len == 0 && b.cap == 0, "free empties and drops storage");
    is_int(buf_append_str(&b, "again"), 0, "a freed buffer may be used again");
    is_str(buf_cstr(&b), "again", "content after reuse");
    buf_free(&b);
    buf_free(&b); /* twice is harmless */
    ok(b.data == NULL, "double free is harmless");
}

static void test_reserve(void)
{
    struct buf b;
    buf_init(&b, 100);
    is_int(buf_reserve(&b, 100), 0, "reserve exactly max");
    ok(b.cap >= 100, "reserve makes room (cap %zu)", b.cap);
    is_int(b.len, 0, "reserve does not change len");
    is_int(buf_reserve(&b, 101), -ENOBUFS, "reserve past max fails");
    is_int(buf_append(&b, "0123456789", 10), 0, "append 10");
    is_int(buf_reserve(&b, 90), 0, "reserve the rest");
    is_int(buf_reserve(&b, 91), -ENOBUFS, "reserve one past the rest fails");
    is_int(buf_reserve(&b, SIZE_MAX), -ENOBUFS, "reserve SIZE_MAX fails");
    is_int(b.len, 10, "failed reserve leaves len");
    buf_free(&b);

    /* Without a limit, a reserve grows the storage and appends then fit. */
    buf_init(&b, 0);
    is_int(buf_reserve(&b, 1000), 0, "reserve 1000 without a limit");
    ok(b.cap >= 1000, "cap >= 1000 (%zu)", b.cap);
    buf_free(&b);
}

static void test_ceiling(void)
{
    struct buf b;
    buf_init(&b, 16);
    is_int(buf_append(&b, "0123456789", 10), 0, "append 10 of 16");

    is_int(buf_append(&b, "abcdefg", 7), -ENOBUFS, "append that would reach 17 fails");
    ok(holds(&b, "0123456789", 10), "failed append: len and bytes unchanged");
    is_int(buf_append_str(&b, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"), -ENOBUFS, "long append_str fails");
    ok(holds(&b, "0123456789", 10), "failed append_str: unchanged");
    is_int(buf_append(&b, "x", SIZE_MAX), -ENOBUFS, "append of SIZE_MAX bytes fails (no overflow)");
    ok(holds(&b, "0123456789", 10), "still unchanged");

    is_int(buf_append(&b, "abcdef", 6), 0, "append that reaches exactly max fits");
    is_int(b.len, 16, "len == max");
    ok(holds(&b, "0123456789abcdef", 16), "content at max");
    is_int(buf_append(&b, "z", 1), -ENOBUFS, "one more byte at max fails");
    is_int(buf_append(&b, "", 0), 0, "zero bytes at max succeed");
    ok(holds(&b, "0123456789abcdef", 16), "content unchanged after failures at max");

    const char *s = buf_cstr(&b);
    is_str(s, "0123456789abcdef", "cstr at len == max works");
    is_int(b.len, 16, "cstr at max does not change len");
    ok(b.cap >= 17, "cstr's NUL has the byte past max");

    buf_consume(&b, 4);
    ok(holds(&b, "456789abcdef", 12), "consume at max");
    is_int(buf_append(&b, "WXYZ", 4), 0, "room again after consume");
    ok(holds(&b, "456789abcdefWXYZ", 16), "content after refill");
    buf_free(&b);

    /* max 1: the smallest ceiling. */
    buf_init(&b, 1);
    is_int(buf_append(&b, "ab", 2), -ENOBUFS, "max 1: two bytes fail");
    is_int(b.len, 0, "max 1: still empty");
    is_int(buf_append(&b, "a", 1), 0, "max 1: one byte fits");
    is_str(buf_cstr(&b), "a", "max 1: cstr");
    buf_free(&b);
}

static void test_printf_ceiling(void)
{
    struct buf b;
    buf_init(&b, 20);
    is_int(buf_append_str(&b, "0123456789"), 0, "printf ceiling: 10 of 20");
    is_int(buf_printf(&b, "%s%d", "abcdefghij", 7), -ENOBUFS, "printf of 11 with 10 left fails");
    ok(holds(&b, "0123456789", 10), "failed printf: len and bytes unchanged");
    is_int(buf_printf(&b, "%s", "abcdefghi"), 0, "printf of 9 with 10 left fits");
    is_int(b.len, 19, "len 19");
    is_int(buf_printf(&b, "%c%c", 'x', 'y'), -ENOBUFS, "printf of 2 with 1 left fails");
    ok(holds(&b, "0123456789abcdefghi", 19), "unchanged after failed printf");
    is_int(buf_printf(&b, "%c", '!'), 0, "printf of exactly the remaining 1 fits");
    is_int(b.len, 20, "len == max after printf");
    ok(holds(&b, "0123456789abcdefghi!", 20), "content after printf to max");
    is_int(buf_printf(&b, "%s", ""), 0, "printf of nothing at max succeeds");
    is_int(buf_printf(&b, "%d", 1), -ENOBUFS, "printf of one more byte at max fails");
    is_str(buf_cstr(&b), "0123456789abcdefghi!", "cstr after printf at max");
    buf_free(&b);

    /* The whole room in one printf, into a fresh buffer. */
    buf_init(&b, 8);
    is_int(buf_printf(&b, "%08d", 1234), 0, "printf of exactly max into an empty buffer");
    is_str(buf_cstr(&b), "00001234", "its text");
    buf_free(&b);
    buf_init(&b, 8);
    is_int(buf_printf(&b, "%09d", 1234), -ENOBUFS, "printf of max + 1 into an empty buffer");
    is_int(b.len, 0, "still empty");
    buf_free(&b);

    /* A long printf that makes the storage grow. */
    buf_init(&b, 0);
    is_int(buf_printf(&b, "%0500d|%s", 7, "end"), 0, "printf of 504 bytes");
    is_int(b.len, 504, "len 504");
    ok(b.data[0] == '0' && b.data[499] == '7' && memcmp(b.data + 500, "|end", 4) == 0,
       "long printf content");
    buf_free(&b);

    /* Longer than one pass formats into a bounded buffer, after text already in it. */
    buf_init(&b, 1000);
    buf_append_str(&b, "head:");
    is_int(buf_printf(&b, "%0600d|%s", 9, "tail"), 0, "printf of 605 bytes after 5, max 1000");
    ok(b.len == 610 && memcmp(b.data, "head:", 5) == 0 && b.data[604] == '9' &&
           memcmp(b.data + 605, "|tail", 5) == 0,
       "its text follows what was there");
    is_int(buf_printf(&b, "%0391d", 1), -ENOBUFS, "printf of 391 with 390 left fails");
    is_int(b.len, 610, "... and leaves the length");
    is_int(buf_printf(&b, "%0390d", 1), 0, "printf of exactly the 390 left fits");
    is_int(b.len, 1000, "len == max");
    buf_free(&b);
}

static void test_binary(void)
{
    static const uint8_t bin[] = {0x00, 'a', 0x00, 0x00, 0xff, 0x80, '\n', 0x00};
    struct buf b;
    buf_init(&b, 0);
    is_int(buf_append(&b, bin, sizeof(bin)), 0, "append binary with NULs");
    ok(holds(&b, bin, sizeof(bin)), "binary bytes kept, NULs counted");
    is_int(buf_append(&b, bin, sizeof(bin)), 0, "append again");
    is_int(b.len, 2 * sizeof(bin), "len counts all bytes");
    ok(memcmp(b.data + sizeof(bin), bin, sizeof(bin)) == 0, "second copy intact");
    buf_consume(&b, 3);
    ok(b.len == 2 * sizeof(bin) - 3 && memcmp(b.data, bin + 3, sizeof(bin) - 3) == 0,
       "consume over binary data");
    (void)buf_cstr(&b);
    is_int(b.len, 2 * sizeof(bin) - 3, "cstr leaves binary len");
    ok(b.data[b.len] == '\0', "cstr wrote a NUL past len");
    is_int(buf_printf(&b, "%c", 0), 0, "printf of a NUL character");
    is_int(b.len, 2 * sizeof(bin) - 2, "printf of %%c 0 adds one byte");
    ok(b.data[b.len - 1] == 0, "that byte is NUL");
    buf_free(&b);
}

static void test_growth(void)
{
    const size_t total = 1024 * 1024;
    struct buf b;
    buf_init(&b, 0);
    uint8_t piece[7];
    size_t off = 0;
    int fails = 0;
    while (off < total) {
        size_t n = total - off < sizeof(piece) ? total - off : sizeof(piece);
        for (size_t i = 0; i < n; i++)
            piece[i] = (uint8_t)((off + i) * 131u + ((off + i) >> 8));
        if (buf_append(&b, piece, n) != 0)
            fails++;
        off += n;
    }
    is_int(fails, 0, "1 MiB in 7-byte pieces: every append succeeds");
    is_int(b.len, total, "len is 1 MiB");
    ok(b.cap >= total, "cap >= len");
    size_t bad = 0;
    for (size_t i = 0; i < total; i++)
        if (b.data[i] != (uint8_t)(i * 131u + (i >> 8)))
            bad++;
    is_int(bad, 0, "every byte is where it was appended");

    /* Consume in odd-sized pieces and check what stays. */
    size_t gone = 0;
    while (b.len > 100000) {
        buf_consume(&b, 99991);
        gone += 99991;
    }
    bad = 0;
    for (size_t i = 0; i < b.len; i++)
        if (b.data[i] != (uint8_t)((gone + i) * 131u + ((gone + i) >> 8)))
            bad++;
    is_int(bad, 0, "content after consuming 99991-byte pieces");
    buf_free(&b);

    /* Growth under a ceiling: the storage never passes max + 1. */
    buf_init(&b, 1000);
    int rc = 0;
    size_t appended = 0;
    while ((rc = buf_append(&b, "1234567", 7)) == 0)
        appended += 7;
    is_int(rc, -ENOBUFS, "appends under max 1000 stop with -ENOBUFS");
    is_int(appended, 994, "142 pieces of 7 fit in 1000");
    is_int(b.len, 994, "len 994");
    ok(b.cap <= 1001, "cap (%zu) stays within max + 1", b.cap);
    is_int(buf_append(&b, "123456", 6), 0, "the last 6 bytes fit");
    is_int(b.len, 1000, "len == max");
    ok(b.cap <= 1001, "cap (%zu) still within max + 1", b.cap);
    is_int(strlen(buf_cstr(&b)), 1000, "cstr of 1000 bytes");
    buf_free(&b);
}

int main(void)
{
    test_basics();
    test_reserve();
    test_ceiling();
    test_printf_ceiling();
    test_binary();
    test_growth();
    return done_testing();
}
