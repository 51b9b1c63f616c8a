import CLandlock
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The Landlock sandbox each rsync sender of one engine runs in, so that no path, however it
/// resolves, can make it read outside the source.
///
/// The sender runs as root, and a path checked by ``PathConfinement`` can be swapped for a symlink
/// before rsync opens it. In the sandbox rsync may read beneath the source, its own path list and
/// the password file, and what it needs to run: its binary and the directories of the shared
/// libraries it loads (found with `LD_TRACE_LOADED_OBJECTS`, again whenever the binary changes), the
/// loader cache, the locale files, and the few `/etc` files users, groups, the resolver and OpenSSL
/// read (``systemFiles``; never `/etc` as a whole). It may write nothing. A read it is refused is
/// `Permission denied (13)` in rsync's output, logged with the path (``logRefusedReads(_:logger:)``).
final class SenderSandbox: Sendable {
  /// The Landlock ABI version of this kernel.
  let abi: Int32
  /// The configured rsync: a name looked up in `PATH`, or a path.
  let rsyncPath: String
  /// The source; read access beneath it (resolved when each run starts).
  let source: String
  /// The password file, readable.
  let passwordFile: String?
  private let cache = Mutex<Runtime?>(nil)

  /// Files outside the source that rsync and the C library read to run; none holds a secret.
  static let systemFiles = [
    "/etc/ld.so.cache", "/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/hosts", "/etc/host.conf",
    "/etc/resolv.conf", "/etc/gai.conf", "/etc/services", "/etc/localtime", "/etc/ssl/openssl.cnf",
    "/usr/lib/ssl/openssl.cnf", "/usr/share/locale/locale.alias",
  ]
  /// Directories outside the source whose files rsync may read to run (locales).
  static let systemDirectories = ["/usr/lib/locale"]

  /// What one run may do beyond the source: read, or read and run.
  struct Grant: Equatable {
    var path: String
    var access: UInt64
  }

  /// The executable and its grants, for one version of the rsync binary.
  private struct Runtime {
    var identity: FileIdentity?
    var executable: String
    var grants: [Grant]
  }

  /// Whether the sender can be confined here, and why not.
  enum Availability {
    case confined(SenderSandbox)
    case unconfined(reason: String)
  }

  private init(abi: Int32, config: WatchConfig) {
    self.abi = abi
    rsyncPath = config.rsyncPath
    source = config.source
    passwordFile = config.passwordFile
  }

  /// The Landlock ABI version this kernel offers; below 1 when it has none.
  static var kernelABI: Int32 { fleet_landlock_abi() }

  /// A sandbox for `config`'s senders, when this kernel has Landlock and rsync is a binary.
  static func prepare(_ config: WatchConfig) -> Availability {
    let abi = kernelABI
    guard abi >= 1 else {
      let why =
        errno == EOPNOTSUPP
        ? "Landlock is disabled (add landlock to the lsm= boot parameter)"
        : "this kernel has no Landlock (Linux 5.13 or later with CONFIG_SECURITY_LANDLOCK)"
      return .unconfined(reason: why)
    }
    if let path = resolveExecutable(config.rsyncPath), !isELF(path) {
      return .unconfined(
        reason: "rsync-path \(path) is not a program binary (a wrapper script cannot run confined); "
          + "point rsync-path at the rsync binary itself")
    }
    return .confined(SenderSandbox(abi: abi, config: config))
  }

  /// A ruleset for one run that may also read `reading` (its path list), and the program to run.
  ///
  /// - Throws: ``ConfinedProcess/SpawnError`` when the ruleset cannot be made.
  func ruleset(reading: [String]) async throws -> (fd: Int32, executable: String) {
    let runtime = await currentRuntime()
    let fd = fleet_landlock_ruleset(fleet_landlock_fs_rights(abi))
    guard fd >= 0 else { throw ConfinedProcess.SpawnError(step: FLEET_SPAWN_CONFINE, errno: errno) }
    var grants = runtime.grants
    grants.append(Grant(path: source, access: FLEET_LL_READ_FILE | FLEET_LL_READ_DIR))
    for file in reading + [passwordFile].compactMap({ $0 }) {
      grants.append(Grant(path: file, access: FLEET_LL_READ_FILE))
    }
    for grant in grants { Self.allow(grant, in: fd) }
    return (fd, runtime.executable)
  }

  /// Adds `grant` to `ruleset`; a path that does not exist is skipped (nothing to allow).
  private static func allow(_ grant: Grant, in ruleset: Int32) {
    let fd = fleet_open_path(grant.path)
    guard fd >= 0 else { return }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { return }
    let fileRights = FLEET_LL_EXECUTE | FLEET_LL_READ_FILE
    let access = (st.st_mode & S_IFMT) == S_IFDIR ? grant.access : grant.access & fileRights
    _ = fleet_landlock_allow(ruleset, fd, access)
  }

  /// The executable and grants for the rsync binary as it is now, traced again when it changed.
  private func currentRuntime() async -> Runtime {
    let executable = Self.resolveExecutable(rsyncPath) ?? rsyncPath
    let identity = FileIdentity(path: executable)
    if let cached = cache.withLock({ $0 }), cached.executable == executable, cached.identity == identity,
      identity != nil
    {
      return cached
    }
    let run = FLEET_LL_READ_FILE | FLEET_LL_EXECUTE
    var grants = [Grant(path: executable, access: run)]
    for dir in await Self.libraryDirectories(of: executable) { grants.append(Grant(path: dir, access: run)) }
    grants += Self.systemFiles.map { Grant(path: $0, access: FLEET_LL_READ_FILE) }
    grants += Self.systemDirectories.map { Grant(path: $0, access: FLEET_LL_READ_FILE) }
    let runtime = Runtime(identity: identity, executable: executable, grants: grants)
    cache.withLock { $0 = runtime }
    return runtime
  }

  /// The directories of the ELF interpreter and shared libraries `executable` loads, as the dynamic
  /// loader reports them (`LD_TRACE_LOADED_OBJECTS=1`); none for a static binary.
  static func libraryDirectories(of executable: String) async -> [String] {
    let env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LD_") }.map { "\($0)=\($1)" }
    guard
      let result = try? await ConfinedProcess.run(
        executable: executable, arguments: [], environment: env + ["LD_TRACE_LOADED_OBJECTS=1"],
        ruleset: -1, tailCapacity: 64 << 10),
      result.termination == .exited(0)
    else { return [] }
    return libraryDirectories(inTrace: result.stdout.text)
  }

  /// The directories of the absolute paths in the dynamic loader's trace output.
  static func libraryDirectories(inTrace trace: String) -> [String] {
    var dirs: [String] = []
    for line in trace.split(whereSeparator: \.isNewline) {
      let afterArrow = line.range(of: "=> ").map { line[$0.upperBound...] }
      let text = (afterArrow ?? line).drop(while: { $0 == " " || $0 == "\t" })
      guard text.hasPrefix("/") else { continue }
      let path = text.prefix(while: { $0 != " " })
      guard let slash = path.lastIndex(of: "/") else { continue }
      let dir = slash == path.startIndex ? "/" : String(path[..<slash])
      if !dirs.contains(dir) { dirs.append(dir) }
    }
    return dirs
  }

  /// `name` as an absolute path: itself when it holds a `/`, else the first executable in `PATH`.
  static func resolveExecutable(_ name: String) -> String? {
    if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
    let path =
      ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
    for dir in path.split(separator: ":") where dir.hasPrefix("/") {
      let candidate = "\(dir)/\(name)"
      var st = stat()
      if stat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 {
        return candidate
      }
    }
    return nil
  }

  /// Whether `path` starts like an ELF binary (a script starts with `#!`).
  static func isELF(_ path: String) -> Bool {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return true }
    defer { close(fd) }
    var magic = [UInt8](repeating: 0, count: 4)
    let n = magic.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4) }
    return n < 4 || magic == [0x7f, 0x45, 0x4c, 0x46]
  }

  /// Logs each read rsync was refused, with its path: in the sandbox that means the path led
  /// outside the source (a symlink swapped in between the check and rsync's open), unless the
  /// file's own permissions refuse it (an NFS export that squashes root).
  static func logRefusedReads(_ stderr: String, logger: Logger?) {
    for line in stderr.split(whereSeparator: \.isNewline) where line.contains("Permission denied (13)") {
      let path = line.split(separator: "\"", omittingEmptySubsequences: false).dropFirst().first
      logger?.error(
        """
        rsync was refused a read: the path leads outside the source (a symlink swapped in? the sender \
        may read only the source), or its own permissions refuse it (check with ls -l); it is re-queued \
        and sent as what it is now
        """,
        metadata: ["path": "\(path.map(String.init) ?? "?")", "rsync": "\(line)"])
    }
  }
}

/// Which file a path names now, and which version of it: device, inode, size and change time.
struct FileIdentity: Equatable {
  var device: UInt64
  var inode: UInt64
  var size: Int64
  var changed: Int
  var changedNanos: Int

  init?(path: String) {
    var st = stat()
    guard stat(path, &st) == 0 else { return nil }
    device = UInt64(st.st_dev)
    inode = UInt64(st.st_ino)
    size = Int64(st.st_size)
    changed = st.st_ctim.tv_sec
    changedNanos = st.st_ctim.tv_nsec
  }
}
