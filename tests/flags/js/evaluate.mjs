// Evaluates a flag through the real OpenFeature JS server SDK with the
// OpenTelemetry EventHook, which emits each evaluation as an OTel log record;
// the OTel JS logs SDK exports them over OTLP/HTTP (JSON or protobuf).
//
// Input (JSON on argv[2]): {endpoint, token, protocol: "json"|"proto",
//   service, requests: [{traceId, spanId, user}]}. Each evaluation runs
// inside the given span context, as it would inside a request handler.
import { OpenFeature, InMemoryProvider } from '@openfeature/server-sdk';
import { EventHook } from '@openfeature/open-telemetry-hooks';
import { context, trace, TraceFlags } from '@opentelemetry/api';
import { logs } from '@opentelemetry/api-logs';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { OTLPLogExporter as JsonExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPLogExporter as ProtoExporter } from '@opentelemetry/exporter-logs-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';

const input = JSON.parse(process.argv[2]);
const Exporter = input.protocol === 'proto' ? ProtoExporter : JsonExporter;
const exporter = new Exporter({
  url: input.endpoint,
  headers: { Authorization: `Bearer ${input.token}` },
});
const provider = new LoggerProvider({
  resource: resourceFromAttributes({ 'service.name': input.service }),
  processors: [new SimpleLogRecordProcessor({ exporter })],
});
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
logs.setGlobalLoggerProvider(provider);

await OpenFeature.setProviderAndWait(new InMemoryProvider({
  'new-checkout': {
    variants: { on: true, off: false },
    defaultVariant: 'off',
    disabled: false,
    contextEvaluator: (ctx) => (ctx.targetingKey.startsWith('beta-') ? 'on' : 'off'),
  },
}));
OpenFeature.addHooks(new EventHook());
const client = OpenFeature.getClient();

for (const request of input.requests) {
  const spanContext = { traceId: request.traceId, spanId: request.spanId,
                        traceFlags: TraceFlags.SAMPLED, isRemote: false };
  await context.with(trace.setSpanContext(context.active(), spanContext), () =>
    client.getBooleanValue(request.flag ?? 'new-checkout', false,
                           { targetingKey: request.user }));
}
await provider.forceFlush();
await provider.shutdown();
console.log(JSON.stringify({ evaluated: input.requests.length }));
