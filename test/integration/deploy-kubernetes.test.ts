/**
 * deploy/kubernetes: the example is consistent with itself and with the broker — probes on
 * /healthz and /readyz through the named HTTP port, listen addresses matching the container
 * ports, the Service and ServiceMonitor reaching those ports, a grace period longer than the
 * broker's own, and a ConfigMap the broker's configuration loader accepts.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { loadConfig } from "../../src/config/load-config.js";

interface Port {
  readonly name: string;
  readonly containerPort?: number;
  readonly port?: number;
  readonly targetPort?: string | number;
}

interface Probe {
  readonly httpGet?: { readonly path: string; readonly port: string | number };
}

interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: { readonly secretKeyRef?: { readonly name: string; readonly key: string } };
}

interface Container {
  readonly ports: readonly Port[];
  readonly env: readonly EnvVar[];
  readonly startupProbe?: Probe;
  readonly livenessProbe?: Probe;
  readonly readinessProbe?: Probe;
  readonly volumeMounts: ReadonlyArray<{ readonly name: string; readonly mountPath: string }>;
}

interface Manifest {
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly labels?: Record<string, string> };
  readonly spec?: Record<string, unknown>;
  readonly data?: Record<string, string>;
  readonly resources?: readonly string[];
}

const directory = new URL("../../deploy/kubernetes/", import.meta.url);
const kustomization = parseAllDocuments(readFileSync(new URL("kustomization.yaml", directory), "utf8"))[0]?.toJS() as Manifest;
const manifests = (kustomization.resources ?? []).flatMap((file) =>
  parseAllDocuments(readFileSync(new URL(file, directory), "utf8")).map((document) => document.toJS() as Manifest),
);

function only(kind: string): Manifest {
  const found = manifests.filter((manifest) => manifest.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0] as Manifest;
}

const deployment = only("Deployment");
const podSpec = (deployment.spec?.["template"] as { spec: Record<string, unknown>; metadata: { labels: Record<string, string> } }).spec;
const podLabels = (deployment.spec?.["template"] as { metadata: { labels: Record<string, string> } }).metadata.labels;
const container = (podSpec["containers"] as Container[])[0] as Container;
const env = new Map(container.env.map((variable) => [variable.name, variable]));
const portNamed = (name: string | number | undefined) => container.ports.find((port) => port.name === name);

describe("the Kubernetes example", () => {
  it("probes liveness on /healthz and readiness on /readyz through the HTTP port", () => {
    expect(container.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "http" });
    expect(container.startupProbe?.httpGet).toEqual({ path: "/healthz", port: "http" });
    expect(container.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "http" });
  });

  it("listens where the container ports say, on every interface", () => {
    expect(env.get("BROKER_HTTP_ADDR")?.value).toBe(`0.0.0.0:${portNamed("http")?.containerPort}`);
    expect(env.get("BROKER_GRPC_ADDR")?.value).toBe(`0.0.0.0:${portNamed("grpc")?.containerPort}`);
  });

  it("selects the pods from the Deployment, the Service and the ServiceMonitor", () => {
    const selector = (deployment.spec?.["selector"] as { matchLabels: Record<string, string> }).matchLabels;
    expect(podLabels).toMatchObject(selector);
    const service = only("Service");
    expect(podLabels).toMatchObject(service.spec?.["selector"] as Record<string, string>);
    const servicePorts = service.spec?.["ports"] as Port[];
    for (const port of servicePorts) expect(portNamed(port.targetPort), port.name).toBeDefined();
    const monitor = only("ServiceMonitor");
    expect(service.metadata.labels).toMatchObject((monitor.spec?.["selector"] as { matchLabels: Record<string, string> }).matchLabels);
    for (const endpoint of monitor.spec?.["endpoints"] as Array<{ port: string; path: string }>) {
      expect(servicePorts.map((port) => port.name)).toContain(endpoint.port);
      expect(endpoint.path).toBe("/metrics");
    }
  });

  it("keeps secrets in a Secret and mounts the ConfigMap where BROKER_CONFIG points", () => {
    for (const name of ["DATABASE_URL", "GOOGLE_CLIENT_SECRET"]) expect(env.get(name)?.valueFrom?.secretKeyRef, name).toBeDefined();
    const configPath = env.get("BROKER_CONFIG")?.value ?? "";
    const mount = container.volumeMounts.find((m) => configPath.startsWith(`${m.mountPath}/`));
    const volume = (podSpec["volumes"] as Array<{ name: string; configMap?: { name: string } }>).find((v) => v.name === mount?.name);
    expect(volume?.configMap?.name).toBe(only("ConfigMap").metadata.name);
    expect(Object.keys(only("ConfigMap").data ?? {})).toContain(configPath.slice(configPath.lastIndexOf("/") + 1));
  });

  it("has a configuration the broker accepts, with a shutdown grace shorter than the pod's", () => {
    const configPath = env.get("BROKER_CONFIG")?.value ?? "";
    const values: Record<string, string> = {};
    for (const variable of container.env) values[variable.name] = variable.value ?? `placeholder-${variable.name.toLowerCase()}`;
    values["DATABASE_URL"] = "postgres://broker:placeholder@db.internal:5432/oauth_broker";
    const document = only("ConfigMap").data?.[configPath.slice(configPath.lastIndexOf("/") + 1)] ?? "";
    const config = loadConfig({
      env: values,
      readFile: (path) => {
        if (path !== configPath) throw new Error(`unexpected read of ${path}`);
        return document;
      },
    });
    expect(config.nodeEnv).toBe("production");
    expect(config.vault).toBeDefined();
    expect(config.providers.map((provider) => provider.id)).toContain("google");
    expect(Number(podSpec["terminationGracePeriodSeconds"]) * 1000).toBeGreaterThan(config.shutdownGraceMs);
  });
});
