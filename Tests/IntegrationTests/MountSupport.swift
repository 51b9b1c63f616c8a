import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A mount a test made on a path of its own (a ``TempDir``), for "the source's filesystem is not
/// mounted" cases. Unmounted by ``unmount()`` or, whatever happens, when it goes away.
///
/// Needs root; the tests run in a private mount namespace (`fsw`), so nothing leaks to the machine,
/// and every mount is undone before its directory is removed.
final class TestMount {
  let target: String
  private(set) var isMounted = false

  private init(target: String) {
    self.target = target
  }

  /// Bind-mounts the directory `source` on `target`.
  static func bind(_ source: String, on target: String) throws -> TestMount {
    let m = TestMount(target: target)
    try m.mount(source: source, type: nil, flags: UInt(MS_BIND))
    return m
  }

  /// Mounts a fresh, empty tmpfs on `target`.
  static func tmpfs(on target: String) throws -> TestMount {
    let m = TestMount(target: target)
    try m.mount(source: "tmpfs", type: "tmpfs", flags: 0)
    return m
  }

  /// Mounts an overlay of `lower` and `upper` (with `work`, on the same filesystem as `upper`) on
  /// `target`: a filesystem that reports no file handles.
  static func overlay(lower: String, upper: String, work: String, on target: String) throws -> TestMount {
    let m = TestMount(target: target)
    let options = "lowerdir=\(lower),upperdir=\(upper),workdir=\(work)"
    guard Glibc.mount("overlay", target, "overlay", 0, options) == 0 else {
      throw POSIXErrorBox(errno, "mount overlay on \(target)")
    }
    m.isMounted = true
    return m
  }

  /// Makes a small ext4 filesystem in the file `image` with `inodeSize`-byte inodes (128: times to
  /// the second only) and loop-mounts it on `target`, emptied of its `lost+found`.
  static func ext4Image(_ image: String, on target: String, inodeSize: Int = 128) throws -> TestMount {
    guard FileManager.default.createFile(atPath: image, contents: nil), truncate(image, 32 << 20) == 0 else {
      throw POSIXErrorBox(errno, "create \(image)")
    }
    try run("/usr/sbin/mkfs.ext4", ["-q", "-F", "-I", "\(inodeSize)", image])
    try run("/usr/bin/mount", ["-o", "loop", image, target])
    let m = TestMount(target: target)
    m.isMounted = true
    rmdir(target + "/lost+found")
    return m
  }

  private static func run(_ tool: String, _ arguments: [String]) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool)
    p.arguments = arguments
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
      throw POSIXErrorBox(
        EIO, "\(tool) \(arguments.joined(separator: " ")) exited with \(p.terminationStatus)")
    }
  }

  /// Mounts again what `bind` mounted first, on the same target.
  func rebind(_ source: String) throws {
    try mount(source: source, type: nil, flags: UInt(MS_BIND))
  }

  private func mount(source: String, type: String?, flags: UInt) throws {
    guard Glibc.mount(source, target, type, flags, nil) == 0 else {
      throw POSIXErrorBox(errno, "mount \(source) on \(target)")
    }
    isMounted = true
  }

  /// Unmounts (lazily when something still uses it, as a late `umount -l` would).
  func unmount() throws {
    guard isMounted else { return }
    if umount2(target, 0) != 0 {
      guard errno == EBUSY, umount2(target, Int32(MNT_DETACH)) == 0 else {
        throw POSIXErrorBox(errno, "umount \(target)")
      }
    }
    isMounted = false
  }

  deinit {
    if isMounted { umount2(target, Int32(MNT_DETACH)) }
  }
}
