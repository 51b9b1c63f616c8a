import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The libc extended-attribute calls on a path itself (`<sys/xattr.h>`, which the Glibc module does
/// not import), looked up once with `dlsym`.
enum Xattr {
  typealias List = @convention(c) (UnsafePointer<CChar>, UnsafeMutablePointer<CChar>?, Int) -> Int
  typealias Get =
    @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int
  typealias Set =
    @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeRawPointer, Int, Int32) -> Int32

  static func symbol<T>(_ name: String, _ type: T.Type) -> T {
    guard let pointer = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else {
      fatalError("libc has no \(name)")
    }
    return unsafeBitCast(pointer, to: type)
  }

  /// `llistxattr(2)`.
  static let list = symbol("llistxattr", List.self)
  /// `lgetxattr(2)`.
  static let get = symbol("lgetxattr", Get.self)
  /// `lsetxattr(2)`.
  static let set = symbol("lsetxattr", Set.self)
}
