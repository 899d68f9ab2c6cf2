# Sourced by the benchmarks: steadier CPU figures on a VM that hands memory back to its host.
#
# With free page reporting (a virtio balloon; the kernel shows /sys/module/page_reporting),
# memory the guest frees goes back to the host, and the first touch of such a page is then a
# fault on the host, charged as CPU time to whatever touches it: usually a server writing a
# received file into fresh page cache. On the development VM (where DAMON also pages cold
# memory out, ~20 MB/s, which is then reported too) that moved the same build's CPU per 512 KB
# instance between 1.3 and 3.3 ms. FILL=14G (say) fills the page cache first with a sparse
# file in $WORK, read once, so that the run's writes reuse memory the host already backs; it
# lasts as long as DAMON leaves the file in memory (minutes here), so run one benchmark per
# fill. The file goes with $WORK. Not on tmpfs, where the file would hold that much RAM.
settle_memory() {
  if [ -n "${FILL:-}" ]; then
    if [ "$(findmnt -no FSTYPE -T "$WORK")" = tmpfs ]; then
      echo "FILL ignored: $WORK is on tmpfs"
      return
    fi
    echo "filling the page cache with $FILL..."
    fallocate -l "$FILL" "$WORK/fill" && cat "$WORK/fill" > /dev/null
  elif [ -e /sys/module/page_reporting/parameters/page_reporting_order ]; then
    echo "note: this kernel reports free pages to its host: FILL=14G (about 60 % of RAM) gives steadier CPU figures"
  fi
}
