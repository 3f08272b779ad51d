# Thin wrappers over the npm scripts, for hands used to operator projects.
.PHONY: help install-deps test test-e2e lint lint-fix build run manifests generate

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

node_modules: package.json package-lock.json
	npm ci
	@touch node_modules

test: node_modules ## Unit, integration and end-to-end tests
	npm test

test-e2e: node_modules ## End-to-end tests only (real guests)
	npm run test:e2e

lint: node_modules ## Formatting, lint rules and type checks
	npm run lint

lint-fix: node_modules ## Apply formatting and safe lint fixes
	npm run lint:fix

build: node_modules ## Compile TypeScript to dist/js
	npm run build

run: node_modules ## Run the operator against the current kubeconfig
	npm run operator

manifests: node_modules ## Regenerate config/crd/bases from src/api
	npm run manifests

generate: manifests ## Alias: the API types and CRDs come from one source
