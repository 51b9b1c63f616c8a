import Logging

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Keeps listed paths from leading rsync out of the source.
///
/// rsync's sender resolves a `--files-from` path following symlinks in its middle components, so
/// `d/shadow` with `d -> /etc` sends `/etc/shadow`. Before a transfer, each listed path's proper
/// ancestors are checked from the top down with `lstat` (a link is never followed); when one is not
/// a real directory now (a symlink or a file), the topmost such ancestor is sent instead, by itself:
/// what it is now is the truth the backup gets (a symlink arrives as a symlink, and replaces what the
/// backup had beneath it). A missing ancestor (or one that cannot be examined) leaves the path as
/// it is: rsync finds it gone (or reports it).
///
/// The check and rsync's own open race; the sender's sandbox (``SenderSandbox``) covers that window.
struct PathConfinement {
  /// The source directory, as configured.
  let source: [UInt8]

  init(source: String) {
    self.source = Array(source.utf8)
  }

  /// One listed path sent as another because an ancestor of it is no longer a real directory.
  struct Replacement: Equatable {
    var listed: SyncPath
    var sent: SyncPath
  }

  /// `paths` with every path beneath a symlink or a file replaced by that symlink or file (once);
  /// the replacements made, for the log.
  func check(_ paths: [SyncPath]) -> (paths: [SyncPath], replaced: [Replacement]) {
    var kinds: [RelativePath: AncestorKind] = [:]
    var out: [SyncPath] = []
    var seen = Set<SyncPath>()
    var replaced: [Replacement] = []
    for listed in paths {
      let sent = confined(listed, kinds: &kinds)
      if sent != listed { replaced.append(Replacement(listed: listed, sent: sent)) }
      if seen.insert(sent).inserted { out.append(sent) }
    }
    return (out, replaced)
  }

  /// ``check(_:)``, logging each replacement with the path listed and the path sent.
  func check(_ paths: [SyncPath], logger: Logger?) -> [SyncPath] {
    let (checked, replaced) = check(paths)
    for r in replaced {
      logger?.notice(
        "a changed path lies beneath a symlink or file now; sending that instead (never following it)",
        metadata: ["listed": "\(r.listed)", "sent": "\(r.sent)"])
    }
    return checked
  }

  enum AncestorKind {
    case directory, notDirectory
    /// Missing, or it cannot be examined: rsync finds out for itself.
    case unknown
  }

  private func confined(_ listed: SyncPath, kinds: inout [RelativePath: AncestorKind]) -> SyncPath {
    guard let path = listed.path else { return listed }
    for ancestor in path.ancestors {
      let kind = kinds[ancestor] ?? kind(of: ancestor)
      kinds[ancestor] = kind
      switch kind {
      case .directory: continue
      case .unknown: return listed
      case .notDirectory: return .entry(ancestor)
      }
    }
    return listed
  }

  /// What `path` is now, without following a symlink in its last component (its ancestors were
  /// checked before it). Only a successful `lstat` that finds no directory replaces a path: an
  /// ancestor swapped between two checks is the sandbox's case.
  func kind(of path: RelativePath) -> AncestorKind {
    var st = stat()
    let cPath = absoluteCPath(root: source, path.bytes).map { CChar(bitPattern: $0) }
    guard lstat(cPath, &st) == 0 else { return .unknown }
    return (st.st_mode & S_IFMT) == S_IFDIR ? .directory : .notDirectory
  }
}
