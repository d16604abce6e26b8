#!/usr/bin/env python3
"""check_dsn.py — reads a delivery status notification from a file and
prints its structure as JSON, for test_dsn.c to compare with what it meant
to build.

The report is read twice, by two parsers that share nothing with
smtpd/dsn.c: Python's email package (policy.default) for the headers, the
parts and their defects, and a plain MIME split on the boundary the header
declares, which sees the octets themselves (line ends, line lengths, the
third part byte for byte, the delivery-status fields unfolded).

    check_dsn.py [--flat] [--third OUT] REPORT

--flat prints one "key=value" line per leaf instead of JSON (keys joined
with dots, list items by index, values JSON-escaped without quotes), which
a C test can search without a JSON parser. --third writes the third part's
body, as it is in the report, to OUT.

Standard library only; exit status 0 when the report could be read at all.
"""

import argparse
import email
import email.policy
import json
import re
import sys


def raw_facts(data):
    lines = data.split(b"\r\n")
    return {
        "bare_lf": len(re.findall(rb"(?<!\r)\n", data)),
        "bare_cr": len(re.findall(rb"\r(?!\n)", data)),
        "max_line": max(len(line) for line in lines),
        "lines_over_998": sum(1 for line in lines if len(line) > 998),
        "ends_crlf": data.endswith(b"\r\n"),
        "header_8bit": any(b >= 0x80 for b in data[: data.find(b"\r\n\r\n")]),
        "nul": data.count(b"\0"),
    }


def split_parts(body, boundary):
    """The parts of a multipart body, as RFC 2046 5.1.1 delimits them: the
    CRLF before a delimiter line belongs to the delimiter."""
    b = re.escape(boundary.encode("ascii"))
    delims = list(re.finditer(rb"(?:\A|\r\n)--" + b + rb"(--)?[ \t]*(?:\r\n|\Z)", body))
    parts = []
    for i in range(len(delims) - 1):
        if delims[i].group(1):
            break
        parts.append(body[delims[i].end() : delims[i + 1].start()])
    closed = any(d.group(1) for d in delims)
    return parts, len(delims), closed


def part_head_body(raw):
    if raw.startswith(b"\r\n"):
        return b"", raw[2:]
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw, b""
    return raw[: end + 2], raw[end + 4 :]


def field_groups(text):
    """RFC 3464 2.1: groups of fields separated by blank lines; a field's
    continuation lines are unfolded by taking out the CRLF only."""
    groups, cur, last = [], {}, None
    for line in text.split("\r\n"):
        if line == "":
            if cur:
                groups.append(cur)
            cur, last = {}, None
        elif line[0] in " \t" and last is not None:
            cur[last] += line
        else:
            name, sep, value = line.partition(":")
            if not sep:
                cur.setdefault("_malformed", []).append(line)
                continue
            last = name.strip()
            cur[last] = value.strip(" \t")
    if cur:
        groups.append(cur)
    return groups


def check(data):
    out = {"raw": raw_facts(data)}
    msg = email.message_from_bytes(data, policy=email.policy.default)
    out["headers"] = [[k, str(v)] for k, v in msg.items()]
    out["header_names"] = ",".join(k for k, _ in msg.items())
    out["header"] = {k.lower(): str(v) for k, v in reversed(msg.items())}
    out["content_type"] = msg.get_content_type()
    out["report_type"] = msg.get_param("report-type") or ""
    boundary = msg.get_boundary() or ""
    out["boundary"] = boundary
    out["defects"] = [
        "%s:%s" % (p.get_content_type(), type(d).__name__)
        for p in msg.walk()
        for d in getattr(p, "defects", [])
    ]
    subparts = msg.get_payload() if msg.is_multipart() else []
    out["email_nparts"] = len(subparts)
    out["email_types"] = ",".join(p.get_content_type() for p in subparts)
    if len(subparts) > 1 and subparts[1].get_content_type() == "message/delivery-status":
        blocks = subparts[1].get_payload()
        out["email_blocks"] = len(blocks)
        out["email_actions"] = ",".join(str(b.get("Action", "")) for b in blocks[1:])
    if subparts and subparts[0].get_content_type() == "text/plain":
        human = subparts[0].get_content()
        out["human"] = human
        out["human_flat"] = " ".join(human.split())

    top_end = data.find(b"\r\n\r\n")
    raw_parts, ndelims, closed = split_parts(data[top_end + 4 :], boundary)
    out["delimiters"] = ndelims
    out["closed"] = closed
    out["parts"] = []
    bodies = []
    for raw in raw_parts:
        head, body = part_head_body(raw)
        h = email.message_from_bytes(head + b"\r\n", policy=email.policy.default)
        out["parts"].append(
            {
                "type": h.get_content_type(),
                "charset": h.get_param("charset") or "",
                "cte": str(h.get("Content-Transfer-Encoding", "")),
                "description": str(h.get("Content-Description", "")),
                "size": len(body),
                "8bit": any(c >= 0x80 for c in body),
            }
        )
        bodies.append(body)
    out["nparts"] = len(raw_parts)
    out["types"] = ",".join(p["type"] for p in out["parts"])

    if len(bodies) > 1:
        try:
            text = bodies[1].decode("utf-8" if "global" in out["parts"][1]["type"] else "ascii")
            groups = field_groups(text)
        except UnicodeDecodeError:
            groups = []
            out["status_decode_error"] = True
        out["per_message"] = groups[0] if groups else {}
        out["recipients"] = groups[1:]
        out["nrecipients"] = len(groups) - 1 if groups else 0
    out["third"] = {"kind": "none"}
    if len(bodies) > 2:
        t = out["parts"][2]["type"]
        third = {
            "kind": "message" if t in ("message/rfc822", "message/global") else "headers",
            "size": len(bodies[2]),
        }
        inner = email.message_from_bytes(bodies[2], policy=email.policy.default)
        third["subject"] = str(inner.get("Subject", ""))
        third["header_count"] = len(inner.items())
        out["third"] = third
    return out, bodies


def flatten(prefix, value, lines):
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(prefix + "." + k if prefix else k, v, lines)
    elif isinstance(value, list):
        lines.append("%s.count=%d" % (prefix, len(value)))
        for i, v in enumerate(value):
            flatten("%s.%d" % (prefix, i), v, lines)
    elif isinstance(value, bool):
        lines.append("%s=%s" % (prefix, "true" if value else "false"))
    elif isinstance(value, int):
        lines.append("%s=%d" % (prefix, value))
    else:
        lines.append("%s=%s" % (prefix, json.dumps(str(value))[1:-1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flat", action="store_true")
    ap.add_argument("--third")
    ap.add_argument("report")
    args = ap.parse_args()
    with open(args.report, "rb") as f:
        data = f.read()
    out, bodies = check(data)
    if args.third:
        with open(args.third, "wb") as f:
            f.write(bodies[2] if len(bodies) > 2 else b"")
    if args.flat:
        lines = []
        flatten("", out, lines)
        sys.stdout.write("\n".join(lines) + "\n")
    else:
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
