// A Node service that evaluates flags through OpenFeature's EventHook, as its README
// recommends, and exports through the stock OTel JS SDKs: logs (the evaluations) and
// traces (the requests they belong to), over OTLP/HTTP in JSON or protobuf.
//
// node flag_client.mjs <base url> <token> <json|proto> <logs-first|traces-first> <user>...
//
// Each user is one request: a SERVER span "GET /checkout" whose handler calls a child
// span "pricing" that evaluates `new-checkout` for that user; a user whose name ends in
// "-missing" evaluates a flag the provider does not have. Prints one JSON line per
// request: the user, its trace id, and its server span id (hex), for the test to check.

import { trace, SpanKind } from "@opentelemetry/api";
import { logs } from "@opentelemetry/api-logs";
import { LoggerProvider, SimpleLogRecordProcessor } from "@opentelemetry/sdk-logs";
import { OTLPLogExporter as JsonLogExporter } from "@opentelemetry/exporter-logs-otlp-http";
import { OTLPLogExporter as ProtoLogExporter } from "@opentelemetry/exporter-logs-otlp-proto";
import { NodeTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";
import { OTLPTraceExporter as JsonTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtoTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { OpenFeature, InMemoryProvider } from "@openfeature/server-sdk";
import { EventHook } from "@openfeature/open-telemetry-hooks";

const [baseUrl, token, encoding, order, ...users] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${token}` };
const resource = resourceFromAttributes({
  "service.name": "js-checkout",
  "deployment.environment.name": "test",
});

const [LogExporter, TraceExporter] =
  encoding === "proto" ? [ProtoLogExporter, ProtoTraceExporter] : [JsonLogExporter, JsonTraceExporter];

// Held until flushed, so the test decides which signal reaches Monoenv first.
class Held {
  constructor(exporter) {
    this.exporter = exporter;
    this.items = [];
  }
  export(items, done) {
    this.items.push(...items);
    done({ code: 0 });
  }
  send() {
    return new Promise((resolve, reject) =>
      this.exporter.export(this.items, (result) =>
        result.code === 0 ? resolve() : reject(result.error || new Error("export failed")),
      ),
    );
  }
  shutdown() {
    return this.exporter.shutdown();
  }
}

const heldLogs = new Held(new LogExporter({ url: `${baseUrl}/v1/logs`, headers }));
const heldSpans = new Held(new TraceExporter({ url: `${baseUrl}/v1/traces`, headers }));

const loggerProvider = new LoggerProvider({
  resource,
  processors: [new SimpleLogRecordProcessor(heldLogs)],
});
// Before the hook is made: it takes its logger from the global provider.
logs.setGlobalLoggerProvider(loggerProvider);
const tracerProvider = new NodeTracerProvider({
  resource,
  spanProcessors: [new SimpleSpanProcessor(heldSpans)],
});
tracerProvider.register();

await OpenFeature.setProviderAndWait(
  new InMemoryProvider({
    "new-checkout": {
      variants: { on: true, off: false },
      defaultVariant: "off",
      disabled: false,
      contextEvaluator: (context) => (context.targetingKey.endsWith("-on") ? "on" : "off"),
    },
  }),
);
OpenFeature.addHooks(new EventHook());
const client = OpenFeature.getClient();
const tracer = trace.getTracer("js-checkout");

const requests = [];
for (const user of users) {
  await tracer.startActiveSpan(
    "GET /checkout",
    { kind: SpanKind.SERVER, attributes: { "http.route": "/checkout", "http.request.method": "GET" } },
    async (server) => {
      await tracer.startActiveSpan("pricing", async (pricing) => {
        const flag = user.endsWith("-missing") ? "no-such-flag" : "new-checkout";
        await client.getBooleanValue(flag, false, { targetingKey: user });
        pricing.end();
      });
      server.end();
      const context = server.spanContext();
      requests.push({ user, trace_id: context.traceId, span_id: context.spanId });
    },
  );
}

const signals = order === "logs-first" ? [heldLogs, heldSpans] : [heldSpans, heldLogs];
for (const signal of signals) {
  await signal.send();
}
for (const request of requests) {
  console.log(JSON.stringify(request));
}
await Promise.all([heldLogs.shutdown(), heldSpans.shutdown()]);
