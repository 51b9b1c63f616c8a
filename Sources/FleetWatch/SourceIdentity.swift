import FleetCore
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// What makes the source directory the source: the filesystem it lives on, its root's inode, and
/// whether it held anything.
///
/// Recorded in the state directory after the first successful full sync (and when an operator
/// accepts a new source), and compared before every transfer: an empty mountpoint, another
/// filesystem mounted there, or a directory re-created under the same name is not the data the
/// backup holds (see ``SourceGuard``).
public struct SourceIdentity: Sendable, Codable, Equatable {
  /// `statvfs` `f_fsid` (from `statfs`) when non-zero, else `st_dev`: which filesystem the
  /// source is on.
  public var filesystem: UInt64
  /// The filesystem's type (`ext4`, `xfs`, `nfs4`, `tmpfs`, ...), from `/proc/self/mountinfo`.
  public var filesystemType: String
  /// `st_dev` of the source path.
  public var device: UInt64
  /// `st_ino` of the source path.
  public var inode: UInt64
  /// Whether the source held no entry (excluded names aside).
  public var empty: Bool

  /// The record's file name inside ``WatchConfig/stateDir``.
  public static let fileName = "source-identity.json"

  /// Whether `other` is the same directory on the same filesystem (emptiness aside).
  ///
  /// `st_dev` is not compared: a block device's minor number may change across boots while the
  /// filesystem's id (from its UUID) does not. A filesystem without an id (tmpfs) is known by its
  /// device, which a new mount changes.
  func isSameDirectory(as other: SourceIdentity) -> Bool {
    filesystem == other.filesystem && filesystemType == other.filesystemType && inode == other.inode
  }

  /// For people: `directory inode 1234 on ext4 filesystem 1c2d…`.
  var summary: String {
    "directory inode \(inode) on \(filesystemType) filesystem \(String(filesystem, radix: 16))"
      + (empty ? " (empty)" : "")
  }

  /// The type of the filesystem on device `dev` (as `st_dev`), from `/proc/self/mountinfo`.
  ///
  /// The source guard asks before every transfer, and mountinfo runs to thousands of lines on a host
  /// with many mounts: types are remembered until the mount table changes (see ``MountTypes``).
  static func filesystemType(device dev: UInt64) -> String {
    MountTypes.shared.type(of: dev) { readFilesystemType(device: dev) }
  }

  private static func readFilesystemType(device dev: UInt64) -> String {
    let major = ((dev >> 8) & 0xFFF) | ((dev >> 32) & ~UInt64(0xFFF))
    let minor = (dev & 0xFF) | ((dev >> 12) & ~UInt64(0xFF))
    let wanted = "\(major):\(minor)"
    guard let info = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else {
      return "unknown"
    }
    for line in info.split(separator: "\n") {
      let fields = line.split(separator: " ")
      guard fields.count > 2, fields[2] == wanted, let dash = fields.firstIndex(of: "-"),
        dash + 1 < fields.count
      else { continue }
      return String(fields[dash + 1])
    }
    return "unknown"
  }
}

/// Filesystem types by device, forgotten whenever this process's mount table changes: the kernel
/// flags a change to every open `/proc/self/mountinfo` (`poll` reports `POLLPRI`), so a remembered
/// type is never one of a device number since reused by another mount.
final class MountTypes: Sendable {
  static let shared = MountTypes()
  /// The open mount table (-1 when it cannot be opened: then nothing is remembered) and the types.
  private let state = Mutex<(fd: Int32, types: [UInt64: String])>((-1, [:]))

  init() {
    let fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC)
    state.withLock { $0.fd = fd }
  }

  deinit { state.withLock { if $0.fd >= 0 { close($0.fd) } } }

  /// The remembered type of `dev`, or `read()`'s answer (remembered unless "unknown").
  func type(of dev: UInt64, read: () -> String) -> String {
    let known: String? = state.withLock { s in
      guard s.fd >= 0 else { return nil }
      var entry = pollfd(fd: s.fd, events: Int16(POLLPRI), revents: 0)
      if poll(&entry, 1, 0) != 0 { s.types = [:] }
      return s.types[dev]
    }
    if let known { return known }
    let type = read()
    if type != "unknown" { state.withLock { if $0.fd >= 0 { $0.types[dev] = type } } }
    return type
  }
}

/// What is at the source path now.
enum SourceObservation: Equatable {
  /// Nothing, or something that cannot be looked at (`errno`).
  case missing(Int32)
  /// Something that is not a directory.
  case notDirectory
  /// A directory that cannot be listed (`errno`).
  case unreadable(Int32)
  /// A directory, with its identity.
  case present(SourceIdentity)

  /// Looks at `path` (symlinks followed, as rsync follows `path/`); names `excludes` matches at
  /// the top do not count as content.
  static func observe(_ path: String, excludes: ExcludeMatcher) -> SourceObservation {
    var st = stat()
    guard stat(path, &st) == 0 else { return .missing(errno) }
    guard (st.st_mode & S_IFMT) == S_IFDIR else { return .notDirectory }
    var fs = statvfs()
    guard statvfs(path, &fs) == 0 else { return .unreadable(errno) }
    let fsid = UInt64(fs.f_fsid)
    guard let dir = opendir(path) else { return .unreadable(errno) }
    defer { closedir(dir) }
    var empty = true
    while let ent = readdir(dir) {
      let name: [UInt8] = withUnsafeBytes(of: &ent.pointee.d_name) { raw in
        Array(raw.prefix(while: { $0 != 0 }))
      }
      if name == [0x2E] || name == [0x2E, 0x2E] { continue }
      if excludes.isExcluded(name, isDirectory: ent.pointee.d_type == UInt8(DT_DIR)) { continue }
      empty = false
      break
    }
    return .present(
      SourceIdentity(
        filesystem: fsid != 0 ? fsid : UInt64(st.st_dev),
        filesystemType: SourceIdentity.filesystemType(device: UInt64(st.st_dev)),
        device: UInt64(st.st_dev), inode: UInt64(st.st_ino), empty: empty))
  }

  /// For people: what is at the path.
  var summary: String {
    switch self {
    case .missing(let e): "nothing (\(String(cString: strerror(e))))"
    case .notDirectory: "something that is not a directory"
    case .unreadable(let e): "a directory that cannot be read (\(String(cString: strerror(e))))"
    case .present(let id): "the \(id.summary)"
    }
  }
}

extension SourceIdentity {
  /// Reads the record in `stateDir`; `nil` when there is none.
  ///
  /// - Throws: when the record exists but cannot be read or parsed.
  static func load(stateDir: String) throws -> SourceIdentity? {
    let path = stateDir + "/" + fileName
    guard FileManager.default.fileExists(atPath: path) else { return nil }
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    return try JSONDecoder().decode(SourceIdentity.self, from: data)
  }

  /// Writes the record into `stateDir` atomically.
  func save(stateDir: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    try AtomicFile.write(
      Array(try encoder.encode(self)) + [0x0A], to: stateDir + "/" + Self.fileName, mode: 0o600)
  }
}
