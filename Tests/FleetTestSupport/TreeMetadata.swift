import Crypto
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The content and metadata of every entry of a directory tree, captured to compare two trees.
///
/// `TreeSnapshot.capture(path)` reads the tree with `lstat`, `llistxattr` and `lgetxattr` (symlinks
/// are never followed) and `differences(from:)` lists, one line per difference, what a restored
/// tree does not give back: content (sha256), kind, owner and group (numeric), mode with the
/// setuid/setgid/sticky bits, mtime to the nanosecond, symlink targets, device numbers, extended
/// attributes, POSIX ACLs (access and default, as `getfacl -n` would print them), link counts,
/// which names are one hard-link set, and allocated blocks (sparse files).
public struct TreeSnapshot: Sendable, Equatable {
  /// What kind of entry a path is.
  public enum Kind: String, Sendable, Equatable {
    case file, directory, symlink, fifo, socket, characterDevice, blockDevice
  }

  /// One entry's content and metadata.
  public struct Entry: Sendable, Equatable {
    /// File, directory, symlink, ….
    public var kind: Kind
    /// Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`).
    public var mode: UInt32
    /// Owner, numeric.
    public var uid: UInt32
    /// Group, numeric.
    public var gid: UInt32
    /// Modification time: seconds and nanoseconds since the epoch.
    public var mtime: Int64
    /// The nanoseconds of the modification time.
    public var mtimeNanoseconds: Int
    /// Size in bytes (files and symlinks; 0 otherwise).
    public var size: Int64
    /// Allocated 512-byte blocks (files only; 0 otherwise): a sparse file has fewer than its size.
    public var allocatedBlocks: Int64
    /// sha256 of the content, hex (files only).
    public var sha256: String?
    /// Where a symlink points.
    public var linkTarget: String?
    /// Device number (character and block devices only).
    public var device: UInt64?
    /// Hard links (`st_nlink`); 0 for directories, whose count depends on the filesystem.
    public var linkCount: Int
    /// Extended attributes other than the ACLs, by name.
    public var xattrs: [String: [UInt8]]
    /// The access ACL beyond the mode bits (`user::rw-,user:1234:rwx,…`), nil when there is none.
    public var accessACL: String?
    /// The default ACL of a directory, nil when there is none.
    public var defaultACL: String?
  }

  /// What `differences(from:ignoring:)` can be told to leave out.
  public enum Aspect: Sendable, Hashable {
    /// Allocated blocks.
    case allocation
    /// The root directory's own owner, group, mode, times, ACLs and xattrs.
    case rootAttributes
  }

  /// Every entry by its path relative to the root (`.` is the root itself).
  public var entries: [String: Entry]
  /// The sets of two or more paths that are one file (same inode), each sorted; sorted by first path.
  public var hardLinkSets: [[String]]

  /// Captures the tree at `root`, leaving out the top-level names in `excluding`.
  public static func capture(_ root: String, excluding: Set<String> = []) throws -> TreeSnapshot {
    var entries: [String: Entry] = [:]
    var inodes: [UInt64: [String]] = [:]
    var pending = ["."]
    while let relative = pending.popLast() {
      let path = relative == "." ? root : root + "/" + relative
      var st = stat()
      guard lstat(path, &st) == 0 else { throw TreeSnapshotError(path: path, call: "lstat") }
      let entry = try Self.entry(path, st)
      entries[relative] = entry
      if entry.kind != .directory && st.st_nlink > 1 {
        inodes[UInt64(st.st_ino), default: []].append(relative)
      }
      guard entry.kind == .directory else { continue }
      for name in try FileManager.default.contentsOfDirectory(atPath: path).sorted()
      where !(relative == "." && excluding.contains(name)) {
        pending.append(relative == "." ? name : relative + "/" + name)
      }
    }
    let sets = inodes.values.filter { $0.count > 1 }.map { $0.sorted() }.sorted { $0[0] < $1[0] }
    return TreeSnapshot(entries: entries, hardLinkSets: sets)
  }

  /// What differs in this tree from `expected`, one line per difference (`path: what: this ≠ expected`);
  /// empty when the trees are identical in every aspect not in `ignoring`.
  public func differences(from expected: TreeSnapshot, ignoring: Set<Aspect> = []) -> [String] {
    var lines: [String] = []
    for path in Set(entries.keys).union(expected.entries.keys).sorted() {
      switch (entries[path], expected.entries[path]) {
      case (nil, _): lines.append("\(path): missing")
      case (_, nil): lines.append("\(path): extra")
      case (let have?, let want?):
        if path == "." && ignoring.contains(.rootAttributes) { continue }
        lines += Self.compare(have, want, ignoring: ignoring).map { "\(path): \($0)" }
      }
    }
    if hardLinkSets != expected.hardLinkSets {
      lines.append("hard-link sets: \(hardLinkSets) ≠ \(expected.hardLinkSets)")
    }
    return lines
  }

  static func compare(_ have: Entry, _ want: Entry, ignoring: Set<Aspect>) -> [String] {
    func field<T: Equatable>(_ name: String, _ key: KeyPath<Entry, T>, _ show: (T) -> String) -> String? {
      have[keyPath: key] == want[keyPath: key]
        ? nil : "\(name): \(show(have[keyPath: key])) ≠ \(show(want[keyPath: key]))"
    }
    let octal = { (m: UInt32) in "0" + String(m, radix: 8) }
    let text = { (s: String?) in s ?? "none" }
    var lines = [
      field("kind", \.kind) { $0.rawValue },
      field("mode", \.mode, octal),
      field("owner", \.uid) { "\($0)" },
      field("group", \.gid) { "\($0)" },
      field("mtime", \.mtime) { "\($0)" },
      field("mtime ns", \.mtimeNanoseconds) { "\($0)" },
      field("size", \.size) { "\($0)" },
      field("sha256", \.sha256, text),
      field("symlink target", \.linkTarget, text),
      field("device", \.device) { $0.map { "\($0)" } ?? "none" },
      field("link count", \.linkCount) { "\($0)" },
      field("access ACL", \.accessACL, text),
      field("default ACL", \.defaultACL, text),
    ].compactMap { $0 }
    if !ignoring.contains(.allocation), let line = field("allocated blocks", \.allocatedBlocks, { "\($0)" }) {
      lines.append(line)
    }
    for name in Set(have.xattrs.keys).union(want.xattrs.keys).sorted()
    where have.xattrs[name] != want.xattrs[name] {
      let show = { (v: [UInt8]?) in v.map { "\"\(String(decoding: $0, as: UTF8.self))\"" } ?? "(absent)" }
      lines.append("xattr \(name): \(show(have.xattrs[name])) ≠ \(show(want.xattrs[name]))")
    }
    return lines
  }
}

/// A system call failed while a tree was captured.
public struct TreeSnapshotError: Error, CustomStringConvertible {
  /// The path it was about.
  public var path: String
  /// The call that failed.
  public var call: String
  /// `errno` after the call.
  public var code: Int32 = errno

  /// `lstat /x/y: No such file or directory`.
  public var description: String { "\(call) \(path): \(String(cString: strerror(code)))" }
}
