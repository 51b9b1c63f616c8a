import FleetCore
import FleetInventory

/// Whether each backup module's filesystem can store user extended attributes, which the daemon's
/// `fake super` needs to keep owners, groups, modes, ACLs and special files without root.
///
/// The check is rsync itself, as the daemon will use it: in a temporary directory beside the module
/// (in the module's directory, or the nearest existing ancestor when it is not made yet), a file
/// owned by uid 1 is copied with `rsync --fake-super -a`, which must write a `user.rsync.%stat`
/// xattr. On a filesystem without user xattrs (ramfs, vfat, tmpfs before Linux 6.6, NFS without
/// xattr support) rsync fails with "failed to write xattr … Operation not supported": `up` refuses
/// the host before anything is written, since every transfer into such a module would fail.
enum ModuleXattrCheck {
  /// What the check found for one module path.
  enum Verdict: Equatable, Sendable {
    /// User xattrs can be written.
    case ok
    /// They cannot: rsync's message.
    case unsupported(String)
    /// The check could not tell (no rsync, a read-only filesystem, …): why.
    case unknown(String)
  }

  /// The first line of the script, by which a fake host knows it.
  static let marker = "# fleetsync: user xattr check"

  /// The script that checks `paths` and prints `VERDICT<TAB>PATH<TAB>DETAIL` per path in `@@xattr`.
  static func script(paths: [String]) throws -> String {
    var text = #"""
      \#(marker)
      fleetsync_xattr_check() {
        p=$1; d=$p
        while [ ! -d "$d" ]; do d=${d%/*}; [ -n "$d" ] || d=/; done
        if ! t=$(mktemp -d "$d/.fleetsync-xattr-check.XXXXXX" 2>&1); then
          printf 'unknown\t%s\tcannot make a test directory in %s: %s\n' "$p" "$d" "$(echo $t)"; return 0
        fi
        : > "$t/f"; chown 1:1 "$t/f"
        if out=$(rsync --fake-super -a "$t/f" "$t/g" 2>&1); then v=ok
        elif printf '%s' "$out" | grep -q 'xattr'; then v=unsupported
        else v=unknown; fi
        rm -rf -- "$t"
        printf '%s\t%s\t%s (checked in %s)\n' "$v" "$p" "$(printf '%s' "$out" | grep -m1 . | tr '\t' ' ')" "$d"
      }
      echo @@xattr

      """#
    for path in paths { text += "fleetsync_xattr_check \(try ShellQuote.quote(path))\n" }
    return text + "echo @@end\n"
  }

  /// The verdict for each of `paths` in the script's output; a path it did not report is unknown.
  static func parse(_ output: String, paths: [String]) -> [String: Verdict] {
    var verdicts: [String: Verdict] = [:]
    for line in SectionedOutput(output)["xattr"] ?? [] {
      let fields = line.split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false)
      guard fields.count == 3 else { continue }
      let detail = String(fields[2])
      switch fields[0] {
      case "ok": verdicts[String(fields[1])] = .ok
      case "unsupported": verdicts[String(fields[1])] = .unsupported(detail)
      default: verdicts[String(fields[1])] = .unknown(detail)
      }
    }
    for path in paths where verdicts[path] == nil { verdicts[path] = .unknown("the check printed nothing") }
    return verdicts
  }

  /// Checks every module of `backup` on `host`: throws ``FleetError/Code-swift.struct/noUserXattrs``
  /// naming each module whose filesystem cannot store user xattrs; returns a warning for each
  /// module that could not be checked.
  static func require(_ backup: BackupHost, on host: any RemoteHost) async throws -> [String] {
    let modules = backup.daemons.flatMap(\.modules)
    guard !modules.isEmpty else { return [] }
    let paths = modules.map(\.path)
    let out = try await host.run(try script(paths: paths))
    let verdicts = parse(out.stdout, paths: paths)
    var refused: [String] = []
    var warnings: [String] = []
    for module in modules {
      switch verdicts[module.path] ?? .ok {
      case .ok: continue
      case .unsupported(let detail):
        refused.append("module \(module.name) (\(module.path); rsync --fake-super said: \(detail))")
      case .unknown(let detail):
        warnings.append(
          "could not check that module \(module.name)'s filesystem (\(module.path)) stores user xattrs "
            + "(fake super keeps owners and ACLs in them): \(detail)")
      }
    }
    guard refused.isEmpty else {
      throw FleetError(
        .noUserXattrs,
        "\(refused.joined(separator: "; ")) is on a filesystem that cannot store user extended "
          + "attributes, where the rsync daemon keeps owners, groups, modes and ACLs (fake super); nothing "
          + "was changed on \(backup.name). Put the module on a filesystem that has them (ext4, XFS, btrfs, "
          + "tmpfs on Linux ≥ 6.6), check with `touch F && setfattr -n user.test -v 1 F` there, then run "
          + "`fleetsync up` again")
    }
    return warnings
  }
}

extension FleetError.Code {
  /// A backup module's filesystem cannot store user extended attributes (`fake super` needs them).
  public static let noUserXattrs = FleetError.Code("provision.noUserXattrs", meaning: .failed)
}
