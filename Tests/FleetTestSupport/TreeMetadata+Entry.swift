import Crypto
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Reading one entry: `lstat` fields, content digest, extended attributes and ACLs.
extension TreeSnapshot {
  static let accessACLName = "system.posix_acl_access"
  static let defaultACLName = "system.posix_acl_default"

  static func entry(_ path: String, _ st: stat) throws -> Entry {
    let kind = Self.kind(st.st_mode)
    var xattrs = try Self.xattrs(path)
    let access = xattrs.removeValue(forKey: accessACLName).map(ACLText.render)
    let defaults = xattrs.removeValue(forKey: defaultACLName).map(ACLText.render)
    return Entry(
      kind: kind, mode: UInt32(st.st_mode) & 0o7777, uid: st.st_uid, gid: st.st_gid,
      mtime: Int64(st.st_mtim.tv_sec), mtimeNanoseconds: st.st_mtim.tv_nsec,
      size: kind == .file || kind == .symlink ? Int64(st.st_size) : 0,
      allocatedBlocks: kind == .file ? Int64(st.st_blocks) : 0,
      sha256: kind == .file ? try Self.sha256(path) : nil,
      linkTarget: kind == .symlink ? try FileManager.default.destinationOfSymbolicLink(atPath: path) : nil,
      device: kind == .characterDevice || kind == .blockDevice ? UInt64(st.st_rdev) : nil,
      linkCount: kind == .directory ? 0 : Int(st.st_nlink),
      xattrs: xattrs, accessACL: access, defaultACL: defaults)
  }

  static func kind(_ mode: mode_t) -> Kind {
    switch mode & S_IFMT {
    case S_IFDIR: .directory
    case S_IFLNK: .symlink
    case S_IFIFO: .fifo
    case S_IFSOCK: .socket
    case S_IFCHR: .characterDevice
    case S_IFBLK: .blockDevice
    default: .file
    }
  }

  static func sha256(_ path: String) throws -> String {
    guard let handle = FileHandle(forReadingAtPath: path) else {
      throw TreeSnapshotError(path: path, call: "open")
    }
    defer { try? handle.close() }
    var hasher = SHA256()
    while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
    return hasher.finalize().map { String(format: "%02x", $0) }.joined()
  }

  /// Every extended attribute of `path` itself (not of a symlink's target), by name.
  static func xattrs(_ path: String) throws -> [String: [UInt8]] {
    let size = Xattr.list(path, nil, 0)
    guard size >= 0 else { throw TreeSnapshotError(path: path, call: "llistxattr") }
    guard size > 0 else { return [:] }
    var names = [CChar](repeating: 0, count: size)
    let got = Xattr.list(path, &names, size)
    guard got >= 0 else { throw TreeSnapshotError(path: path, call: "llistxattr") }
    var result: [String: [UInt8]] = [:]
    for raw in names[..<got].split(separator: 0) {
      let name = String(decoding: raw.map { UInt8(bitPattern: $0) }, as: UTF8.self)
      let length = Xattr.get(path, name, nil, 0)
      guard length >= 0 else { throw TreeSnapshotError(path: path, call: "lgetxattr \(name)") }
      var value = [UInt8](repeating: 0, count: length)
      let read = Xattr.get(path, name, &value, length)
      guard read >= 0 else { throw TreeSnapshotError(path: path, call: "lgetxattr \(name)") }
      result[name] = Array(value[..<read])
    }
    return result
  }
}

/// The Linux POSIX ACL extended attribute (`system.posix_acl_*`): version 2, then entries of
/// tag (u16), permissions (u16) and id (u32), little-endian.
public enum ACLText {
  static let tags: [(UInt16, String, Bool)] = [
    (0x01, "user", false), (0x02, "user", true), (0x04, "group", false), (0x08, "group", true),
    (0x10, "mask", false), (0x20, "other", false),
  ]

  /// The ACL as `getfacl -n` would print it, entries joined by commas: `user::rw-,user:1234:r--,…`.
  public static func render(_ bytes: [UInt8]) -> String {
    guard bytes.count >= 4 else { return "malformed" }
    var parts: [String] = []
    var offset = 4
    while offset + 8 <= bytes.count {
      let tag = UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
      let perm = UInt16(bytes[offset + 2]) | UInt16(bytes[offset + 3]) << 8
      let id = (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + 4 + $1]) << (8 * $1) }
      let (name, qualified) = tags.first { $0.0 == tag }.map { ($0.1, $0.2) } ?? ("tag\(tag)", true)
      let rwx = (perm & 4 != 0 ? "r" : "-") + (perm & 2 != 0 ? "w" : "-") + (perm & 1 != 0 ? "x" : "-")
      parts.append("\(name):\(qualified ? String(id) : ""):\(rwx)")
      offset += 8
    }
    return parts.joined(separator: ",")
  }

  /// The extended attribute's bytes for `text` in the form ``render(_:)`` prints; nil when an entry
  /// is not `user|group|mask|other:[ID]:rwx`. Entries must be in the kernel's order (as listed).
  public static func encode(_ text: String) -> [UInt8]? {
    var bytes: [UInt8] = [2, 0, 0, 0]
    for entry in text.split(separator: ",") {
      let fields = entry.split(separator: ":", omittingEmptySubsequences: false)
      guard fields.count == 3, fields[2].count == 3,
        let tag = tags.first(where: { $0.1 == fields[0] && $0.2 == !fields[1].isEmpty })?.0
      else { return nil }
      let id = fields[1].isEmpty ? UInt32.max : UInt32(fields[1])
      guard let id else { return nil }
      let perm = zip(fields[2], [UInt16(4), 2, 1]).reduce(UInt16(0)) { $0 | ($1.0 == "-" ? 0 : $1.1) }
      bytes += [UInt8(tag & 0xff), UInt8(tag >> 8), UInt8(perm), 0]
      bytes += (0..<4).map { UInt8((id >> (8 * $0)) & 0xff) }
    }
    return bytes
  }
}
