import FleetWire

/// The rsync daemon's `pre-xfer exec` of a module that keeps versions: every write must make them.
///
/// Versions are made by the client (`--backup --backup-dir`): a source that holds the module's
/// password could write without them, and overwrite the mirror's good copies with nothing kept, or
/// name an existing STAMP (or one dated long ago, soon pruned) and overwrite the versions kept
/// there. Ransomware on a source is exactly that. So the daemon refuses, before anything is
/// written, a transfer into the module that
/// - does not pass `--backup` with a `--backup-dir` of the form `.fleetsync-versions/STAMP`;
/// - names a STAMP that exists already, or one more than an hour away from the backup host's clock.
///
/// Reads (restore, verify, listings: `--sender`), dry runs (`-n`) and writes into the versions
/// directory itself (the prune-hold markers; the daemon filter lets nothing else in) pass.
/// `FLEETSYNC_NOW` (seconds since the epoch) replaces the clock, for tests.
public enum VersionsXferCheck {
  /// The script, installed as ``Layout/xferCheckScript``.
  public static let script = #"""
    #!/bin/sh
    # Managed by fleetsync: edits are overwritten by `fleetsync up` and removed by `fleetsync down`.
    # rsync daemon pre-xfer exec of modules that keep versions: a write must keep what it replaces.
    set -u
    refuse() {
      echo "fleetsync: refused: $* (module $RSYNC_MODULE_NAME keeps versions: writes must pass --backup --backup-dir=.fleetsync-versions/STAMP with a new STAMP of now, as fleetsync-watch does)"
      exit 1
    }
    i=1 sender=0 flags='' dir='' prev=''
    while eval "[ -n \"\${RSYNC_ARG$i+x}\" ]"; do
      eval "arg=\$RSYNC_ARG$i"
      [ "$prev" = --backup-dir ] && dir=$arg
      case $arg in
        --sender) sender=1 ;;
        --backup-dir=*) dir=${arg#--backup-dir=} ;;
        --*) ;;
        -*) [ -n "$flags" ] || flags=${arg%%e.*} ;;
      esac
      prev=$arg
      i=$((i + 1))
    done
    [ "$sender" = 1 ] && exit 0
    case $flags in -*n*) exit 0 ;; esac
    case ${RSYNC_REQUEST:-} in
      "$RSYNC_MODULE_NAME/.fleetsync-versions" | "$RSYNC_MODULE_NAME/.fleetsync-versions/"*) exit 0 ;;
    esac
    case $flags in -*b*) ;; *) refuse "a write without --backup" ;; esac
    case $dir in
      .fleetsync-versions/[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]-[0-9][0-9]-[0-9][0-9].[0-9][0-9][0-9]Z) ;;
      *) refuse "--backup-dir '$dir' is not .fleetsync-versions/STAMP" ;;
    esac
    if [ -e "$RSYNC_MODULE_PATH/$dir" ] || [ -L "$RSYNC_MODULE_PATH/$dir" ]; then
      refuse "--backup-dir $dir exists: the versions kept there would be overwritten"
    fi
    # One `date` reads the STAMP's time and the clock (it runs before every write: forks cost).
    stamp=${dir#.fleetsync-versions/}
    stamp=${stamp%.*}
    day=${stamp%%T*} hms=${stamp#*T}
    h=${hms%%-*} ms=${hms#*-}
    clock=now
    [ -n "${FLEETSYNC_NOW:-}" ] && clock="@$FLEETSYNC_NOW"
    set -- $(printf '%s %s:%s:%s\n%s\n' "$day" "$h" "${ms%-*}" "${ms#*-}" "$clock" | date -u -f - +%s) ""
    [ -n "${2:-}" ] || refuse "cannot read the clock or STAMP $stamp"
    if [ $(($1 - $2)) -gt 3600 ] || [ $(($2 - $1)) -gt 3600 ]; then
      refuse "STAMP $stamp is more than an hour away from this host's clock ($(date -u -d "@$2" +%Y-%m-%dT%H-%M-%S))"
    fi
    exit 0
    """#
}
