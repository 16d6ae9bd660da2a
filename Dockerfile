# syntax=docker/dockerfile:1

# Build: compile better-sqlite3 (if no prebuilt binary fits) and the TypeScript sources.
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# The package's own "prepare" script compiles sources that are not copied yet;
# run only better-sqlite3's install script.
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --ignore-scripts

# Runtime: compiled code, production dependencies and region configs only.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    MERIDIAN_HEALTHCHECK_URL=http://127.0.0.1:7101/healthz
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY regions ./regions
# A fresh named volume takes this folder's owner, so the node user can write to it.
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 7101 7102 7103
HEALTHCHECK --interval=5s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.MERIDIAN_HEALTHCHECK_URL).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node runs as PID 1 and handles SIGTERM itself: it finishes in-flight writes and closes the database.
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["start", "--config", "/app/regions/compose/us-east.json"]
