import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// TCP helpers on 127.0.0.1 shared by the tests.
public enum LocalPorts {
  /// Binds a TCP socket to 127.0.0.1 on `port` (0 = any free one); returns the fd and the bound port.
  static func bind(port: Int = 0) -> (fd: Int32, port: Int)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
    }
    guard bound == 0 else {
      close(fd)
      return nil
    }
    _ = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
  }

  /// A TCP port nothing listens on right now.
  public static func free() -> Int {
    guard let (fd, port) = bind() else { return 0 }
    close(fd)
    return port
  }

  /// A socket listening on a free port, to make "port in use"; closed by the caller.
  public static func occupy() throws -> (fd: Int32, port: Int) {
    guard let (fd, port) = bind(), listen(fd, 16) == 0 else {
      throw POSIXError(.EADDRINUSE)
    }
    return (fd, port)
  }

  /// Whether something accepts TCP connections on 127.0.0.1:`port`.
  public static func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    } == 0
  }
}
