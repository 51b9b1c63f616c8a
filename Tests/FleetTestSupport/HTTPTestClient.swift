import FleetCore
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A response read by ``HTTPTestClient``.
public struct HTTPTestResponse: Sendable {
  /// Status code.
  public var status: Int
  /// Headers, names lowercased.
  public var headers: [String: String]
  /// Body as text.
  public var body: String
}

/// A deliberately plain HTTP/1.1 client over a POSIX socket, so the server is tested by real bytes on
/// a real TCP connection and not by another HTTP library's interpretation.
public enum HTTPTestClient {
  /// Sends one request to 127.0.0.1:`port` and reads the response to EOF.
  public static func request(_ method: String, _ path: String, port: Int) throws -> HTTPTestResponse {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw FleetError(.io, "socket") }
    defer { close(fd) }
    // A bound for a hung server, generous for a loaded machine.
    var timeout = timeval(tv_sec: 60, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard connected == 0 else { throw FleetError(.io, "connect to port \(port)") }
    let request = Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    guard
      request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count
    else { throw FleetError(.io, "send") }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
      let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if n < 0 { throw FleetError(.io, "recv") }
      if n == 0 { break }
      bytes.append(contentsOf: chunk[0..<n])
    }
    let text = String(decoding: bytes, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw FleetError(.io, "no header end in \(text)") }
    let headLines = text[..<split.lowerBound].components(separatedBy: "\r\n")
    let statusParts = headLines[0].split(separator: " ")
    guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
      throw FleetError(.io, "bad status line \(headLines[0])")
    }
    var headers: [String: String] = [:]
    for line in headLines.dropFirst() {
      guard let colon = line.firstIndex(of: ":") else { continue }
      headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
        in: .whitespaces)
    }
    return HTTPTestResponse(status: status, headers: headers, body: String(text[split.upperBound...]))
  }
}
