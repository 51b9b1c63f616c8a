import CFanotify

/// One fanotify event, decoded from the kernel's byte stream (`FAN_REPORT_DFID_NAME`).
///
/// Layout (linux/fanotify.h): a 24-byte `fanotify_event_metadata` (`event_len` u32, `vers` u8,
/// `reserved` u8, `metadata_len` u16, `mask` u64, `fd` i32, `pid` i32), then information records,
/// each a header (`info_type` u8, `pad` u8, `len` u16), the filesystem id (8 bytes), a
/// `file_handle` (`handle_bytes` u32, `handle_type` i32, the bytes) and, for a `DFID_NAME` record,
/// the entry's NUL-terminated name.
struct FanotifyEvent: Equatable {
  /// `FAN_*` bits.
  var mask: UInt64
  /// The directory's file handle, as ``FanotifyPaths`` resolves it; empty for a queue overflow.
  var directory: [UInt8]
  /// The entry's name in the directory; empty or `.` for an event on the directory itself.
  var name: [UInt8]

  /// The event is about a directory.
  var isDirectory: Bool { mask & FLEET_FAN_ONDIR != 0 }
  /// The kernel dropped events (`FAN_Q_OVERFLOW`).
  var isOverflow: Bool { mask & FLEET_FAN_Q_OVERFLOW != 0 }
  /// The event is about the directory the handle names, not an entry in it.
  var isOnDirectoryItself: Bool { name.isEmpty || name == [UInt8(ascii: ".")] }

  static let metadataSize = 24

  /// Decodes all complete events in `buffer`; `closeFD` gets any event descriptor (none are
  /// expected with file handles reported).
  static func parse(_ buffer: UnsafeRawBufferPointer, closeFD: (Int32) -> Void = { _ in }) -> [FanotifyEvent]
  {
    var events: [FanotifyEvent] = []
    var offset = 0
    while offset + metadataSize <= buffer.count {
      let length = Int(buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
      let metadataLength = Int(buffer.loadUnaligned(fromByteOffset: offset + 6, as: UInt16.self))
      guard length >= metadataSize, metadataLength >= metadataSize, offset + length <= buffer.count else {
        break
      }
      let mask = buffer.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
      let fd = buffer.loadUnaligned(fromByteOffset: offset + 16, as: Int32.self)
      if fd >= 0 { closeFD(fd) }
      var event = FanotifyEvent(mask: mask, directory: [], name: [])
      var record = offset + metadataLength
      while record + 4 <= offset + length {
        let type = buffer.load(fromByteOffset: record, as: UInt8.self)
        let recordLength = Int(buffer.loadUnaligned(fromByteOffset: record + 2, as: UInt16.self))
        guard recordLength >= 4, record + recordLength <= offset + length else { break }
        if type == FLEET_FAN_INFO_DFID_NAME || type == FLEET_FAN_INFO_DFID {
          decodeFID(
            buffer, record: record, length: recordLength, named: type == FLEET_FAN_INFO_DFID_NAME,
            into: &event)
        }
        record += recordLength
      }
      events.append(event)
      offset += length
    }
    return events
  }

  /// Reads the directory handle (and the name) of one information record.
  private static func decodeFID(
    _ buffer: UnsafeRawBufferPointer, record: Int, length: Int, named: Bool, into event: inout FanotifyEvent
  ) {
    let handle = record + 4 + 8  // header, fsid
    let end = record + length
    guard handle + 8 <= end else { return }
    let handleBytes = Int(buffer.loadUnaligned(fromByteOffset: handle, as: UInt32.self))
    let handleEnd = handle + 8 + handleBytes
    guard handleEnd <= end else { return }
    event.directory = Array(buffer[handle..<handleEnd])
    guard named else { return }
    let nameBytes = buffer[handleEnd..<end]
    event.name = Array(nameBytes.prefix { $0 != 0 })
  }
}
