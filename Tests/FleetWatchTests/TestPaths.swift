import FleetCore

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// The bytes of `s`.
func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// The relative path `s`; the test fails at once if it is not one.
func rel(_ s: String) -> RelativePath {
  guard let p = RelativePath(b(s)) else { preconditionFailure("not a relative path: \(s)") }
  return p
}

/// `s` as a path sent by itself.
func entry(_ s: String) -> SyncPath { .entry(rel(s)) }

/// `s` as a directory sent whole.
func tree(_ s: String) -> SyncPath { .tree(rel(s)) }

/// A fresh temporary directory.
func makeTempDir() throws -> String {
  var template = Array("/tmp/fleetwatch-unit.XXXXXX".utf8CString)
  guard let p = mkdtemp(&template) else { throw FleetError(.io, "mkdtemp failed") }
  return String(cString: p)
}
