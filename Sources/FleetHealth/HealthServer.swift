import FleetCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A small HTTP/1.1 server for `GET /healthz`, `GET /status` and `GET /metrics`.
///
/// Answers 404 for other paths and 405 (with `Allow: GET, HEAD`) for other methods. It is bound by
/// ``start(host:port:source:logger:group:)`` so that a taken port is reported before anything else
/// starts, and runs until ``close()``.
public final class HealthServer: Sendable {
  private let channel: any Channel
  private let logger: Logger

  /// The port the server listens on (the real one when 0 was asked for).
  public let port: Int

  private init(channel: any Channel, logger: Logger) {
    self.channel = channel
    self.logger = logger
    self.port = channel.localAddress?.port ?? 0
  }

  /// Binds the server and starts answering requests.
  ///
  /// - Parameters:
  ///   - host: The address to listen on, e.g. `127.0.0.1`.
  ///   - port: The TCP port; 0 picks a free one (read it back from ``port``).
  ///   - source: What the endpoints report.
  ///   - logger: Where start and stop are logged.
  ///   - group: The event loop group; the process-wide singleton by default.
  /// - Throws: ``FleetError`` ``FleetError/Code/healthPortInUse`` when the port is taken,
  ///   ``FleetError/Code/healthBind`` for other bind failures.
  public static func start(
    host: String,
    port: Int,
    source: any HealthSource,
    logger: Logger,
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
  ) async throws -> HealthServer {
    let bootstrap = ServerBootstrap(group: group)
      .serverChannelOption(.backlog, value: 64)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
          try channel.pipeline.syncOperations.addHandler(HealthHTTPHandler(source: source))
        }
      }
    do {
      let channel = try await bootstrap.bind(host: host, port: port).get()
      let server = HealthServer(channel: channel, logger: logger)
      logger.info("health endpoint listening", metadata: ["address": "\(host):\(server.port)"])
      return server
    } catch let error as IOError where error.errnoCode == EADDRINUSE {
      throw FleetError(
        .healthPortInUse,
        "health port \(port) on \(host) is already in use; stop the other process or choose another"
          + " port (health-port in the config file, --health-port on the command line)",
        cause: SendableErrorBox(String(describing: error)))
    } catch {
      throw FleetError(
        .healthBind,
        "cannot listen on \(host):\(port) for the health endpoint; check health-address and health-port",
        cause: SendableErrorBox(String(describing: error)))
    }
  }

  /// Stops listening and waits until the listening socket is closed.
  public func close() async {
    do {
      try await channel.close()
    } catch ChannelError.alreadyClosed {
      return
    } catch {
      logger.debug("closing the health endpoint failed", metadata: ["error": "\(error)"])
    }
  }
}

/// Answers one connection's requests from a ``HealthSource``.
final class HealthHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let source: any HealthSource
  private var request: HTTPRequestHead?

  init(source: any HealthSource) {
    self.source = source
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head):
      request = head
    case .body:
      break
    case .end:
      guard let head = request else { return }
      request = nil
      respond(context: context, to: head)
    }
  }

  private func respond(context: ChannelHandlerContext, to head: HTTPRequestHead) {
    let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
    let response = HealthHTTPHandler.route(method: head.method, path: path, source: source)
    var headers = HTTPHeaders()
    headers.add(name: "Content-Type", value: response.contentType)
    headers.add(name: "Content-Length", value: "\(response.body.count)")
    headers.add(name: "Cache-Control", value: "no-store")
    for (name, value) in response.extraHeaders { headers.add(name: name, value: value) }
    if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
    let responseHead = HTTPResponseHead(version: head.version, status: response.status, headers: headers)
    context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
    if head.method != .HEAD {
      var buffer = context.channel.allocator.buffer(capacity: response.body.count)
      buffer.writeBytes(response.body)
      context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
    }
    let keepAlive = head.isKeepAlive
    let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
    context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
      if !keepAlive { loopBoundContext.value.close(promise: nil) }
    }
  }

  /// One response: status, content type, body and any extra headers.
  struct Response {
    var status: HTTPResponseStatus
    var contentType: String
    var body: [UInt8]
    var extraHeaders: [(String, String)] = []
  }

  /// Maps a request to its response; kept apart from the channel plumbing so the rules read in one place.
  static func route(method: HTTPMethod, path: String, source: any HealthSource) -> Response {
    let text = "text/plain; charset=utf-8"
    guard method == .GET || method == .HEAD else {
      return Response(
        status: .methodNotAllowed, contentType: text, body: Array("method not allowed; use GET\n".utf8),
        extraHeaders: [("Allow", "GET, HEAD")])
    }
    switch path {
    case "/healthz":
      let verdict = source.health()
      if verdict.isHealthy {
        let body = verdict.isDegraded ? "degraded: \(verdict.reason)\n" : "ok\n"
        return Response(status: .ok, contentType: text, body: Array(body.utf8))
      }
      let reason = verdict.reason.isEmpty ? "unhealthy" : verdict.reason
      return Response(status: .serviceUnavailable, contentType: text, body: Array("\(reason)\n".utf8))
    case "/status":
      return Response(status: .ok, contentType: "application/json", body: source.statusJSON())
    case "/metrics":
      return Response(
        status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: source.metricsText())
    default:
      return Response(
        status: .notFound, contentType: text,
        body: Array("not found; endpoints: /healthz /status /metrics\n".utf8))
    }
  }
}
