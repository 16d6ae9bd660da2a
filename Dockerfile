# Base image of both stages. The default is the official Node image; where no
# container registry is reachable, `scripts/docker-base.sh` builds a local
# equivalent from Debian packages and prints its name:
#   docker build --build-arg BASE_IMAGE="$(scripts/docker-base.sh)" -t meridian:local .
# (No `# syntax=` line: it would make BuildKit pull a frontend image.)
ARG BASE_IMAGE=node:20-bookworm-slim

# Build: compile better-sqlite3 (if no prebuilt binary fits) and the TypeScript sources.
FROM ${BASE_IMAGE} AS build
# The local base image already has the compilers; the official one gets them from apt.
RUN if ! command -v g++ >/dev/null || ! command -v make >/dev/null || ! command -v python3 >/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends python3 make g++ \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /app
COPY package.json package-lock.json ./
# The package's own "prepare" script compiles sources that are not copied yet;
# run only better-sqlite3's install script.
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --ignore-scripts

# Runtime: compiled code, production dependencies, region configs and the health probe.
FROM ${BASE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY regions ./regions
COPY scripts/healthcheck.mjs ./scripts/healthcheck.mjs
# A fresh named volume takes this folder's owner, so the node user can write to it.
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 7101 7102 7103
# /readyz on the port of whatever config this container runs (file and MERIDIAN_* variables).
HEALTHCHECK --interval=5s --timeout=4s --start-period=20s --retries=3 \
  CMD ["node", "scripts/healthcheck.mjs"]
# node runs as PID 1 and handles SIGTERM itself: it finishes in-flight writes and closes the database.
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["start", "--config", "/app/regions/compose/us-east.json"]
