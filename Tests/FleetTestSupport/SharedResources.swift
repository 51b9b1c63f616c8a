import Testing

/// Something the tests of one process share that some tests change for a while.
///
/// Swift Testing runs suites in parallel. A test that changes a shared resource (lowers an inotify
/// limit, cuts a node of the shared fleet) breaks any test that uses it meanwhile, depending on
/// timing and order. So every test that uses one carries a trait for it
/// (``SharedResourceTrait``): tests that only use it run together, a test that changes it runs
/// alone among them. Only one test takes both (`TestFleetTests.systemdNode`, shared), so no two
/// tests can wait for each other in a cycle; a second such test must take them in the same order.
public enum SharedResource: String, Sendable, CaseIterable {
  /// The machine's inotify limits (see ``InotifyLimits``).
  case inotifyLimits
  /// The fleet of ``TestFleet/shared(nodes:)``: changing it means cutting a node, stopping its
  /// sshd or giving it a new host key (even when restored before the test ends).
  case sharedFleet
}

/// Scopes each case of a test in its use of a ``SharedResource``: shared with other tests that only
/// use it, or alone (exclusive) for a test that changes it.
///
/// On a suite, it applies to every test in it and in its nested suites; a test of such a suite that
/// changes the resource carries the exclusive trait too, and then holds the resource only
/// exclusively.
public struct SharedResourceTrait: TestTrait, SuiteTrait, TestScoping {
  /// The resource.
  public let resource: SharedResource
  /// Whether the test changes it (and so runs alone among the tests that use it).
  public let exclusive: Bool

  /// The resources the current task holds, each with whether it holds it exclusively.
  @TaskLocal static var held: [SharedResource: Bool] = [:]

  /// One lock per resource.
  static let locks = Dictionary(
    uniqueKeysWithValues: SharedResource.allCases.map { ($0, SharedExclusiveLock()) })

  /// Whether the current task holds `resource` exclusively (it runs a test carrying the exclusive trait).
  public static func holdsExclusively(_ resource: SharedResource) -> Bool {
    held[resource] == true
  }

  /// True: on a suite, the trait scopes every test in it and in its nested suites.
  public var isRecursive: Bool { true }

  /// Scopes each test case, unless this is the shared trait and the test carries the exclusive one
  /// for the same resource.
  public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
    // Each test case on its own, so a test that changes the resource can run between two cases.
    guard testCase != nil else { return nil }
    let changes = test.traits.contains {
      ($0 as? Self).map { $0.resource == resource && $0.exclusive } ?? false
    }
    return !exclusive && changes ? nil : self
  }

  /// Runs the test case while holding the resource (once, however many enclosing traits ask for it),
  /// off the cooperative pool (see ``BlockingWorkExecutor``): these tests wait for processes.
  public func provideScope(
    for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
  ) async throws {
    try await withTaskExecutorPreference(BlockingWorkExecutor.shared) {
      try await holding(performing: function)
    }
  }

  private func holding(performing function: @Sendable () async throws -> Void) async throws {
    if let holds = Self.held[resource] {
      // Held by an enclosing scope (a suite's trait and a nested suite's): hold it once.
      precondition(holds || !exclusive, "a test cannot change \(resource) inside a scope that only uses it")
      try await function()
      return
    }
    guard let lock = Self.locks[resource] else { preconditionFailure("no lock for \(resource)") }
    let mode: SharedExclusiveLock.Mode = exclusive ? .exclusive : .shared
    await lock.lock(mode)
    do {
      try await Self.$held.withValue(Self.held.merging([resource: exclusive]) { $1 }) { try await function() }
    } catch {
      await lock.unlock(mode)
      throw error
    }
    await lock.unlock(mode)
  }
}

extension Trait where Self == SharedResourceTrait {
  /// The test starts an engine or an agent, or reads or raises the inotify limits: it runs while no
  /// test changes them.
  public static var dependsOnInotifyLimits: Self {
    SharedResourceTrait(resource: .inotifyLimits, exclusive: false)
  }

  /// The test lowers an inotify limit for a while (``InotifyLimits/with(_:_:_:)``): it runs while no
  /// other test that uses the limits runs.
  public static var changesInotifyLimits: Self {
    SharedResourceTrait(resource: .inotifyLimits, exclusive: true)
  }

  /// The test uses the shared fleet and needs its nodes as they are: it runs while no test cuts a
  /// node, stops an sshd or changes a host key there.
  public static var usesSharedFleet: Self { SharedResourceTrait(resource: .sharedFleet, exclusive: false) }

  /// The test cuts a node of the shared fleet, stops its sshd or changes its host key: it runs while
  /// no other test uses the shared fleet.
  public static var disturbsSharedFleet: Self { SharedResourceTrait(resource: .sharedFleet, exclusive: true) }
}

/// A readers–writer lock for async code, first come first served: a shared request waits behind an
/// exclusive one that came first, so neither kind starves.
actor SharedExclusiveLock {
  /// How a holder holds the lock.
  enum Mode { case shared, exclusive }

  private var sharedHolders = 0
  private var exclusiveHeld = false
  private var waiting: [(mode: Mode, continuation: CheckedContinuation<Void, Never>)] = []

  /// How many requests wait for the lock.
  var queued: Int { waiting.count }

  /// Waits until the lock can be held in `mode`, then holds it.
  func lock(_ mode: Mode) async {
    if waiting.isEmpty && isFree(for: mode) {
      take(mode)
      return
    }
    await withCheckedContinuation { waiting.append((mode, $0)) }
  }

  /// Releases a hold in `mode` and hands the lock to the waiters it can now go to, in order.
  func unlock(_ mode: Mode) {
    switch mode {
    case .shared: sharedHolders -= 1
    case .exclusive: exclusiveHeld = false
    }
    while let next = waiting.first, isFree(for: next.mode) {
      waiting.removeFirst()
      take(next.mode)
      next.continuation.resume()
    }
  }

  private func isFree(for mode: Mode) -> Bool {
    switch mode {
    case .shared: !exclusiveHeld
    case .exclusive: !exclusiveHeld && sharedHolders == 0
    }
  }

  private func take(_ mode: Mode) {
    switch mode {
    case .shared: sharedHolders += 1
    case .exclusive: exclusiveHeld = true
    }
  }
}
