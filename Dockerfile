# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the full toolchain.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts ./scripts
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Runtime stage: production dependencies only, non-root.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
# A replica with the default 10,000 cached tokens stays within 150 MB of RSS (README "Refresh
# capacity"): V8's heap capped, glibc's allocator held to two arenas. A larger
# tokens.cacheMaxEntries needs a larger --max-old-space-size: pass your own NODE_OPTIONS.
ENV NODE_OPTIONS="--max-semi-space-size=1 --max-old-space-size=96" MALLOC_ARENA_MAX=2
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts ./scripts
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
USER node
# gRPC (internal services) and HTTP (browsers, callback, probes, metrics).
ENV BROKER_GRPC_ADDR=0.0.0.0:50051 BROKER_HTTP_ADDR=0.0.0.0:8080 BROKER_DATA_DIR=/tmp/broker-data
EXPOSE 50051 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:8080/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# Compiled entry points only (no src/ here): the commands are `node dist/cli/<command>.js`.
# NODE_ENV=production needs VAULT_ADDR (or BROKER_ALLOW_LOCAL_KEYRING=true); see README.
CMD ["node", "dist/main.js"]
