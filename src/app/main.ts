import { mount } from 'svelte';
import App from './App.svelte';
import { app } from './state.svelte';

mount(App, { target: document.getElementById('app')! });

// the page's state (and through it the engine worker) from the browser console, and for the browser tests
(globalThis as typeof globalThis & { vcoLab?: unknown }).vcoLab = { app };
