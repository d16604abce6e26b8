"""f2b_journal.py FILTER_DIR DAEMON LOG: the addresses fail2ban's filter takes from each line of
LOG as the journal backend hands it over ("HOST kotak-DAEMON[PID]: LINE", the date the
journal's), one per line. Run by Debian's python3, which has fail2ban's modules."""
import sys

sys.path.insert(0, "/usr/lib/python3/dist-packages")
from fail2ban.client.filterreader import FilterReader  # noqa: E402
from fail2ban.server.filter import Filter  # noqa: E402

filter_dir, daemon, log = sys.argv[1:4]
reader = FilterReader("kotak", "kotak", {}, basedir=filter_dir, share_config={})
reader.read()
reader.getOptions({})
flt = Filter(None)
for opt in reader.convert():
    if opt[0] == "set" and opt[2] == "addfailregex":
        flt.addFailRegex(opt[3])
    elif opt[0] == "multi-set" and opt[2] == "addfailregex":
        for regex in opt[3]:
            flt.addFailRegex(regex)
with open(log) as f:
    for line in f:
        found = flt.processLine(("", "2026-12-07T00:00:00 ", f"mail kotak-{daemon}[4242]: "
                                 + line.rstrip("\n")), 1796601600.0)
        for fail in found:
            print(fail[1])
