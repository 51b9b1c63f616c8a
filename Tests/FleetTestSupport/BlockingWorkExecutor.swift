import Dispatch

/// Runs the jobs of tests that block (test fleets, agents, engines, processes waited for) on
/// dispatch's overcommitting threads instead of Swift's cooperative pool.
///
/// The cooperative pool has one thread per core: two on the CI machine. The integration tests wait
/// for processes and fleet commands synchronously; two such waits at once used to hold the whole
/// pool, and every engine running in the test process then stalled for minutes (a source-guard
/// test once waited 120 s for a check its engine never got to run). A custom concurrent queue gets
/// a new thread when its threads block, so a blocked test holds only its own.
public final class BlockingWorkExecutor: TaskExecutor {
  /// The one executor the shared-resource traits run their tests on.
  public static let shared = BlockingWorkExecutor()

  private let queue = DispatchQueue(label: "fleetsync.tests.blocking-allowed", attributes: .concurrent)

  public func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    let executor = asUnownedTaskExecutor()
    queue.async { job.runSynchronously(on: executor) }
  }
}
