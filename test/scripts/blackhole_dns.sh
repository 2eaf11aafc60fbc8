#!/usr/bin/env bash
# Run a command (as root) where every DNS query goes to a name server that
# never answers:
#   test/scripts/blackhole_dns.sh COMMAND [ARG...]
# It runs in a private mount namespace (unshare -m) whose /etc/resolv.conf
# names only 127.0.0.153, where a UDP socket takes every query and answers
# none, with a 30 s resolver timeout.  glibc has no setting that names a
# name server outside resolv.conf, and a resolv.conf name server listens on
# port 53, which only root may bind: hence root, and a namespace so that the
# machine's own resolv.conf is never touched.  Used by test.sh for the
# TAP tests in test/t/dns.
set -euo pipefail

if [ "${AI_DNS_UNSHARED:-}" != 1 ]; then
    AI_DNS_UNSHARED=1 exec unshare --mount --propagation private -- \
        bash "$(readlink -f "$0")" "$@"
fi

conf=$(mktemp /tmp/ai-blackhole-resolv.XXXXXX)
ready=$(mktemp -u /tmp/ai-blackhole-ready.XXXXXX)
printf 'nameserver 127.0.0.153\noptions timeout:30 attempts:1\n' > "$conf"
chmod 644 "$conf"
mount --bind "$conf" /etc/resolv.conf

# bound and never read: queries queue up unanswered, and no ICMP "port
# unreachable" tells the resolver to give up early.  It lives as long as
# this script, even one killed without a chance to clean up.
perl -MIO::Socket::INET -e '
    my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.153:53", Proto => "udp")
        or die "cannot bind 127.0.0.153:53: $!\n";
    open(my $f, ">", $ARGV[0]) or die; close $f;
    my $parent = getppid();
    sleep 1 while getppid() == $parent;' "$ready" &
hole=$!
trap 'kill $hole 2>/dev/null; rm -f "$conf" "$ready"' EXIT
for _ in $(seq 1 100); do
    [ -e "$ready" ] && break
    kill -0 $hole 2>/dev/null || { echo "the black-hole name server did not start" >&2; exit 1; }
    sleep 0.05
done

"$@"
