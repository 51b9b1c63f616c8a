#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// One inotify event, decoded from the kernel's byte stream.
struct InotifyEvent: Equatable {
  /// The watch descriptor, or -1 for a queue overflow.
  var wd: Int32
  /// `IN_*` bits.
  var mask: UInt32
  /// Pairs `IN_MOVED_FROM` with `IN_MOVED_TO`.
  var cookie: UInt32
  /// The entry name inside the watched directory (bytes; may be empty).
  var name: [UInt8]

  var isDirectory: Bool { mask & UInt32(IN_ISDIR) != 0 }

  /// Decodes all complete events in `buffer[0..<count]`.
  static func parse(_ buffer: UnsafeRawBufferPointer) -> [InotifyEvent] {
    var events: [InotifyEvent] = []
    let header = 16  // int wd; uint32 mask, cookie, len
    var offset = 0
    while offset + header <= buffer.count {
      let wd = buffer.loadUnaligned(fromByteOffset: offset, as: Int32.self)
      let mask = buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
      let cookie = buffer.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
      let len = Int(buffer.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
      guard offset + header + len <= buffer.count else { break }
      var name: [UInt8] = []
      if len > 0 {
        let raw = UnsafeRawBufferPointer(rebasing: buffer[(offset + header)..<(offset + header + len)])
        let end = raw.firstIndex(of: 0) ?? len  // the name is NUL-padded
        name = Array(raw[0..<end])
      }
      events.append(InotifyEvent(wd: wd, mask: mask, cookie: cookie, name: name))
      offset += header + len
    }
    return events
  }
}

/// The events the engine watches for on every directory.
///
/// `IN_MODIFY` is included for changes that never close a written file: `truncate(2)`, `mmap`
/// writes, long-running appenders. Such paths are sent once they stay quiet (see ``EventLoop``).
let watchMask: UInt32 =
  UInt32(IN_CREATE) | UInt32(IN_CLOSE_WRITE) | UInt32(IN_MODIFY) | UInt32(IN_DELETE) | UInt32(IN_MOVED_FROM)
  | UInt32(IN_MOVED_TO) | UInt32(IN_ATTRIB) | UInt32(IN_DELETE_SELF) | UInt32(IN_MOVE_SELF)
  | UInt32(IN_ONLYDIR) | UInt32(IN_DONT_FOLLOW) | UInt32(IN_EXCL_UNLINK)

/// The result of adding a watch.
enum AddWatchResult {
  case added(Int32)
  /// The directory is gone or not a directory any more; nothing to watch.
  case vanished
  /// `ENOSPC`: the user's inotify watch limit is reached.
  case limitReached
  case failed(Int32)
}

/// Adds a watch for the NUL-terminated absolute path `cPath`.
func addWatch(fd: Int32, cPath: UnsafePointer<CChar>) -> AddWatchResult {
  let wd = inotify_add_watch(fd, cPath, watchMask)
  if wd >= 0 { return .added(wd) }
  switch errno {
  case ENOENT, ENOTDIR, ELOOP: return .vanished
  case ENOSPC: return .limitReached
  case let e: return .failed(e)
  }
}

/// The current `fs.inotify.max_user_watches`, for error messages.
func maxUserWatches() -> String {
  let fd = open("/proc/sys/fs/inotify/max_user_watches", O_RDONLY | O_CLOEXEC)
  guard fd >= 0 else { return "unknown" }
  defer { close(fd) }
  var buf = [UInt8](repeating: 0, count: 32)
  let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
  guard n > 0 else { return "unknown" }
  return String(decoding: buf[0..<n], as: UTF8.self).trimmingWhitespace()
}

extension String {
  func trimmingWhitespace() -> String {
    var s = Substring(self)
    while let f = s.first, f.isWhitespace { s = s.dropFirst() }
    while let l = s.last, l.isWhitespace { s = s.dropLast() }
    return String(s)
  }
}
