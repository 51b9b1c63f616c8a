import FleetWire

/// The pruning of expired versions on a backup host, never from a source: a POSIX sh script `up`
/// installs as ``Layout/pruneScript``, run hourly by the `fleetsync-prune@DAEMON.timer` (systemd).
///
/// `fleetsync-prune LIST...` reads each prune list (``Renderer/pruneList(_:)``: `DAYS PATH` per
/// module) and, for each module with DAYS > 0, removes the STAMP directories of its versions whose
/// stamp is older than DAYS days. Then, while a module's filesystem is more than 90 % used, it
/// removes the oldest versions of the list's modules first, whatever their age: versions give way
/// to the mirror, which a full disk would stop. A module whose versions directory holds a `.hold-*` marker (a
/// mass-change alarm stands) is skipped, and says so. It never follows a symlink: a versions
/// directory that is one is skipped; a STAMP that is one is removed as a link. What it removes or
/// skips is logged on standard output (the journal). `FLEETSYNC_NOW` (seconds since the epoch)
/// replaces the clock, for tests.
///
/// Each run also records the size of each module's mirror and versions (`du`, KiB) in
/// `/run/fleetsync/sizes/DAEMON` (`MIRROR VERSIONS EPOCH PATH` lines; `FLEETSYNC_SIZES_DIR`
/// elsewhere), which `fleetsync status` shows: a `du` of a large tree takes seconds, too slow for
/// every `status`, and cheap once an hour at idle I/O priority.
public enum VersionsPrune {
  /// The script.
  public static let script = #"""
    #!/bin/sh
    # Managed by fleetsync: edits are overwritten by `fleetsync up` and removed by `fleetsync down`.
    # Removes expired versions: fleetsync-prune LIST... (LIST: "DAYS PATH" lines, one per module).
    set -u
    now=${FLEETSYNC_NOW:-$(date +%s)}
    case $now in
      '' | *[!0-9]*)
        echo "fleetsync-prune: FLEETSYNC_NOW must be seconds since the epoch, not '$now'" >&2
        exit 64 ;;
    esac
    status=0

    prune_module() {
      days=$1 module=$2 dir=$2/.fleetsync-versions
      [ "$days" -gt 0 ] 2>/dev/null || return 0
      if [ -L "$dir" ]; then
        echo "fleetsync-prune: $dir is a symlink, not the versions directory; skipped (remove the link)" >&2
        status=1
        return 0
      fi
      [ -d "$dir" ] || return 0
      for hold in "$dir"/.hold-*; do
        if [ -e "$hold" ] || [ -L "$hold" ]; then
          echo "fleetsync-prune: $module: held by $hold (a mass-change alarm stands); no version removed." \
            "Once the changes are checked, clear the alarm with: fleetsync resume"
          return 0
        fi
      done
      cutoff=$(date -u -d "@$((now - days * 86400))" +%Y%m%d%H%M%S000) || { status=1; return 0; }
      removed=0
      for version in "$dir"/[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]-[0-9][0-9]-[0-9][0-9].[0-9][0-9][0-9]Z; do
        [ -e "$version" ] || [ -L "$version" ] || continue
        digits=$(printf '%s' "${version##*/}" | tr -cd 0-9)
        [ "$digits" -lt "$cutoff" ] || continue
        if rm -rf --one-file-system -- "$version"; then
          echo "fleetsync-prune: removed $version (older than $days days)"
          removed=$((removed + 1))
        else
          echo "fleetsync-prune: could not remove $version; see the error above" >&2
          status=1
        fi
      done
      echo "fleetsync-prune: $module: $removed expired version(s) removed, keeping $days days"
    }

    # Versions never fill the backup: while a module's filesystem is more than $full % used, the oldest
    # versions of the list's modules go first, one STAMP at a time, whatever their age or retention (a full
    # disk would stop the mirror itself). Modules held by a mass-change alarm keep theirs.
    full=90
    make_room() {
      while read -r days path; do
        case $days in '#'* | '') continue ;; esac
        dir=$path/.fleetsync-versions
        [ -d "$dir" ] && [ ! -L "$dir" ] || continue
        for hold in "$dir"/.hold-*; do [ -e "$hold" ] || [ -L "$hold" ] && continue 2; done
        for version in "$dir"/[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]-[0-9][0-9]-[0-9][0-9].[0-9][0-9][0-9]Z; do
          [ -d "$version" ] && [ ! -L "$version" ] && printf '%s %s\n' "${version##*/}" "$version"
        done
      done <"$1" | sort | while read -r stamp version; do
        module=${version%/.fleetsync-versions/*}
        case $roomy in *"|$module|"*) continue ;; esac
        used=$(df -P -- "$module" 2>/dev/null | awk 'NR == 2 { sub("%", "", $5); print $5 }')
        if [ "${used:-0}" -le "$full" ] 2>/dev/null; then
          roomy="$roomy|$module|"
          continue
        fi
        if rm -rf --one-file-system -- "$version"; then
          echo "fleetsync-prune: removed $version: the filesystem of $module is $used% used (versions give way above $full%)"
        else
          echo "fleetsync-prune: could not remove $version; see the error above" >&2
        fi
      done
    }
    roomy=''

    # Sizes in KiB of a module's mirror and versions, for `fleetsync status` (one du per module per run).
    record_sizes() {
      [ -d "$1" ] || return 0
      total=$(du -skx -- "$1" 2>/dev/null | cut -f1)
      versions=0
      if [ -d "$1/.fleetsync-versions" ] && [ ! -L "$1/.fleetsync-versions" ]; then
        versions=$(du -skx -- "$1/.fleetsync-versions" 2>/dev/null | cut -f1)
      fi
      echo "$((${total:-0} - ${versions:-0})) ${versions:-0} $now $1"
    }

    sizes=${FLEETSYNC_SIZES_DIR:-/run/fleetsync/sizes}
    mkdir -p "$sizes" 2>/dev/null || true
    for list in "$@"; do
      if [ ! -r "$list" ]; then
        echo "fleetsync-prune: cannot read the prune list $list; run fleetsync up again" >&2
        status=1
        continue
      fi
      name=${list##*/}; name=${name%.versions}
      : >"$sizes/.$name.new" 2>/dev/null || true
      while read -r days path; do
        case $days in '#'* | '') continue ;; esac
        prune_module "$days" "$path"
      done <"$list"
      make_room "$list"
      while read -r days path; do
        case $days in '#'* | '') continue ;; esac
        record_sizes "$path" >>"$sizes/.$name.new" 2>/dev/null || true
      done <"$list"
      mv -f "$sizes/.$name.new" "$sizes/$name" 2>/dev/null || true
    done
    exit $status

    """#
}

extension VersionsPrune {
  /// The cron entry that prunes hourly on hosts without systemd (cron must run there), every
  /// daemon's modules, logging to `/var/log/fleetsync/prune.log`.
  public static let cron = """
    # Managed by fleetsync: edits are overwritten by `fleetsync up` and removed by `fleetsync down`.
    # Removes expired versions of this host's backup modules (see docs/provisioning.md, Versions).
    17 * * * * root nice -n 10 \(Layout.pruneScript) /etc/fleetsync/rsyncd/*.versions >>/var/log/fleetsync/prune.log 2>&1

    """
}

extension Units {
  /// systemd template of the pruning of an rsync daemon instance's modules (`%i` = daemon name).
  public static let pruneService = """
    # Managed by fleetsync: edits are overwritten by `fleetsync up` and removed by `fleetsync down`.
    [Unit]
    Description=fleetsync: remove expired versions of the modules of rsync daemon %i
    Documentation=https://github.com/fleetsync/fleetsync/blob/main/docs/provisioning.md

    [Service]
    Type=oneshot
    ExecStart=/var/lib/fleetsync/bin/fleetsync-prune /etc/fleetsync/rsyncd/%i.versions
    Nice=10
    IOSchedulingClass=idle
    NoNewPrivileges=yes
    PrivateTmp=yes

    """

  /// systemd timer template: hourly pruning, started by the daemon's unit (`Wants=`) and stopped
  /// with it (`PartOf=`), so `up` and `down` need no unit of their own for it.
  public static let pruneTimer = """
    # Managed by fleetsync: edits are overwritten by `fleetsync up` and removed by `fleetsync down`.
    [Unit]
    Description=fleetsync: hourly removal of expired versions (rsync daemon %i)
    PartOf=fleetsync-rsyncd@%i.service

    [Timer]
    OnActiveSec=1min
    OnCalendar=hourly
    AccuracySec=1min

    """
}
