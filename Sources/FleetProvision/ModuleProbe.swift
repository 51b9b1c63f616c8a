import FleetCore
import FleetWire

/// The authenticated no-op on each module of an rsync daemon, part of its health: a greeting says
/// the daemon runs, not that a watcher can log in to its module and find the module's data there.
///
/// On the backup host, for every module line of the daemon's secrets file, the probe lists the root
/// of the module's read-only versions view (`MODULE.versions`, ``FleetWire/VersionsLayout``) over
/// loopback, with the module's user and secret: it logs in as a watcher does, and it cannot write.
/// The secret goes to rsync in its environment (`RSYNC_PASSWORD`), never in an argument. What fails
/// there and not at the greeting:
/// - the secret (a secrets file that is not 0600 under `strict modes`, a line edited by hand): `auth failed`;
/// - the module's directory: a backup filesystem that is not mounted shows an empty mountpoint, where
///   the versions directory that `up` made is missing: `chroot failed` (`chdir failed` without chroot);
/// - the daemon's config, for the module (`Unknown module`).
///
/// Listing only `.` (`--exclude='?*'`) costs the same on any tree.
enum ModuleProbe {
  /// Shell function `modules INSTANCE PORT`: one line per module, `module NAME ok` or
  /// `module NAME failed: RSYNC'S FIRST ERROR LINE`; `module * failed: …` when the secrets file cannot
  /// be read.
  static let function = #"""
    modules() { # instance port
      f=\#(Layout.etc)/rsyncd/$1.secrets
      if [ ! -r "$f" ]; then echo "module * failed: cannot read $f"; return 0; fi
      while IFS=: read -r u p; do
        case "$u" in \#(Layout.authUser(module: ""))?*) ;; *) continue;; esac
        m=${u#\#(Layout.authUser(module: ""))}
        if e=$(RSYNC_PASSWORD=$p timeout 5 rsync --list-only --no-motd --exclude='?*' \
          "rsync://$u@127.0.0.1:$2/$m\#(VersionsLayout.versionsModuleSuffix)/" 2>&1 >/dev/null); then
          echo "module $m ok"
        else
          echo "module $m failed: $(printf '%s\n' "$e" | grep -m 1 . | tr -d '\r' | cut -c1-200)"
        fi
      done <"$f"
    }

    """#

  /// What precedes a module's line in an instance's section.
  static let prefix = "module "

  /// The modules that failed in `lines` (an instance's section), with why, for people; empty when
  /// every module answered or the section has no module lines.
  static func failures(in lines: [Substring]) -> [(module: String, reason: String)] {
    lines.compactMap { line in
      guard line.hasPrefix(prefix) else { return nil }
      let rest = line.dropFirst(prefix.count)
      guard let space = rest.firstIndex(of: " ") else { return nil }
      let module = String(rest[..<space])
      let said = rest[rest.index(after: space)...]
      guard said.hasPrefix("failed: ") else { return nil }
      return (module, reason(String(said.dropFirst("failed: ".count))))
    }
  }

  /// rsync's error, with what to check.
  static func reason(_ rsync: String) -> String {
    let message = rsync.hasPrefix("@ERROR: ") ? String(rsync.dropFirst("@ERROR: ".count)) : rsync
    if message.contains("auth failed") {
      return message + " (the daemon refuses the module's secret: is its secrets file 0600 and as"
        + " `fleetsync up` wrote it? `fleetsync up` writes it again)"
    }
    if message.contains("chroot failed") || message.contains("chdir failed") {
      return message + " (its directory or the versions directory in it is missing: is the backup"
        + " filesystem mounted? `fleetsync up` makes the directories again once it is)"
    }
    if message.contains("Unknown module") {
      return message + " (the daemon's config does not have it: `fleetsync up` writes it again)"
    }
    return message.isEmpty ? "no answer" : message
  }
}
